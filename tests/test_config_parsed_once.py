"""The config is read by path only where an entry point parses it: outside the parsing room
(``src/mdreid/config/``) no code edits a config in place (``open_dict``), looks a key up by a path string
(``OmegaConf.select``) or reads a config mapping with a fallback (``cfg.get``); everything else receives the
typed objects the parsers return."""

from __future__ import annotations

import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "mdreid"
PARSERS = SRC / "config"
# an in-place edit, a path-string lookup, or a fallback read of a variable named after a config
RAW_READ = re.compile(r"\bopen_dict\b|\bOmegaConf\.select\(|\b\w*(?:cfg|config|conf)\w*\.get\(")


def raw_reads(files: list[Path]) -> list[str]:
    return [
        f"{path.relative_to(SRC.parent)}:{number}: {line.strip()}"
        for path in files
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if RAW_READ.search(line)
    ]


def test_only_the_parsing_room_reads_config_by_path() -> None:
    outside = sorted(p for p in SRC.rglob("*.py") if PARSERS not in p.parents)
    assert len(outside) > 100
    assert raw_reads(outside) == []


def test_the_pattern_finds_each_kind_of_raw_read() -> None:
    """The parsers themselves read by path, so the search above is known to see such lines."""
    found = "\n".join(raw_reads(sorted(PARSERS.rglob("*.py"))))
    assert "OmegaConf.select(cfg" in found and "backbone.get(" not in found  # a section, not a config name
    for line in ("with open_dict(cfg):", "OmegaConf.select(cfg, 'a.b')", "run_cfg.get('x')", "config.get(1)"):
        assert RAW_READ.search(line), line
    for line in ("hparams.get('x')", "tensors.get('sp')", "open_dictionary", "OmegaConf.to_container(cfg)"):
        assert not RAW_READ.search(line), line
