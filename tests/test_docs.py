"""The documentation agrees with the repository: every relative link and anchor in README.md and docs/*.md
resolves, and no page (code blocks included) or committed record (provenance, study reports) carries the
writing machine's folders."""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import pytest

from mdreid.files.portable_paths import portable, portable_overrides

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")


def _prose(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text).lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's anchor, numbered like GitHub when a heading text repeats."""
    found: set[str] = set()
    for line in _prose(page.read_text()):
        if m := HEADING.match(line):
            base = slug(m[1])
            name, n = base, 0
            while name in found:
                n += 1
                name = f"{base}-{n}"
            found.add(name)
    return found


def broken_links(page: Path) -> list[str]:
    bad = []
    for line in _prose(page.read_text()):
        for target in LINK.findall(re.sub(r"`[^`]*`", "", line)):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, mailto:, ...
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                bad.append(f"{target} (no {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest})")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                bad.append(f"{target} (no heading with that anchor)")
    return bad


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    assert not broken_links(page)


def test_the_link_check_catches_a_missing_file_or_anchor(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## Ablation (`scripts/x.py`): does it pay off?\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n[a](other.md) [b](other.md#ablation-scriptsxpy-does-it-pay-off) [c](#title)\n"
        "[d](gone.md) [e](other.md#nothing) [f](#nowhere) [g](https://example.org/x#y)\n"
        "```\n[h](inside-code.md)\n```\n"
    )
    assert [b.split(" ")[0] for b in broken_links(page)] == ["gone.md", "other.md#nothing", "#nowhere"]


# folders that belong to one machine (a home, a scratch or mount folder), not to the repository or to an example
# user path such as /data/RGBNT201 or /weights/ViT-B-16-visual.safetensors
MACHINE_PATH = re.compile(
    r"(?<![\w.~-])(/(?:work|tmp|home|root|Users|opt|mnt|var|private|scratch)/|[A-Za-z]:\\)"
)


def machine_paths(text: str) -> list[str]:
    """The lines of a page that name a machine's own folders, inside code blocks as well as outside."""
    return [line.strip() for line in text.splitlines() if MACHINE_PATH.search(line)]


@pytest.mark.parametrize(
    "page", [*PAGES, *sorted((ROOT / "notebooks").glob("*.ipynb"))], ids=lambda p: p.name
)
def test_no_page_names_a_machine_folder(page: Path) -> None:
    assert not machine_paths(page.read_text()), machine_paths(page.read_text())[:3]


def test_the_machine_path_check_looks_inside_code_blocks() -> None:
    page = "Data under `outputs/study`.\n```bash\npython x.py --root /work/study/data\ncd /tmp/x\n```\n"
    assert machine_paths(page) == ["python x.py --root /work/study/data", "cd /tmp/x"]
    assert not machine_paths("--root /data/RGBNT201 model.backbone.weights=/weights/v.safetensors src/opt/x")


def _strings(node: object) -> list[str]:
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node] if isinstance(node, str) else []


@pytest.mark.parametrize(
    "record",
    [*sorted((ROOT / "docs").glob("*.json")), *sorted((ROOT / "src/mdreid/assets").glob("*.json"))],
    ids=lambda p: p.name,
)
def test_committed_records_carry_no_machine_paths(record: Path) -> None:
    absolute = re.compile(r"(^|[\s=])(/|[A-Za-z]:\\)\w|(^|/)\.\./")
    hits = [s for s in _strings(json.loads(record.read_text())) if absolute.search(s)]
    assert not hits, hits[:3]


def test_paths_are_written_relative_to_the_record(tmp_path: Path) -> None:
    out = tmp_path / "run" / "tower.safetensors"
    args = [f"out={out}", f"hydra.run.dir={out.parent}", f"paths.data_dir={tmp_path / 'data'}", "seed=3"]
    assert portable_overrides(args, out.parent) == [
        "out=tower.safetensors",
        "hydra.run.dir=.",
        "paths.data_dir=../data",
        "seed=3",
    ]
    assert portable(tmp_path / "study" / "full" / "seed0", tmp_path / "study") == "full/seed0"
