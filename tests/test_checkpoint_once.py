"""One entry point reads its checkpoint file once and converts an official file once: every rule that asks
something of the checkpoint (architecture, saved hyper-parameters, image rule, cameras) is answered from the
one typed ``Checkpoint`` that ``resolve_checkpoint`` built, never by reading or converting the file again."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import mdreid.official.layout as layout
from checkpoint_files import save_checkpoint
from conftest import TINY_OVERRIDES, compose_cfg
from mdreid.embed.embedder import Embedder
from mdreid.eval import evaluate
from mdreid.export import export
from test_official import (
    eval_cfg,
    official_file,  # noqa: F401 - the fixture
)


def counted_reads(monkeypatch: pytest.MonkeyPatch, path: Path) -> dict[str, int]:
    """From here on, how often ``path`` is loaded (``torch.load``) and an official state dict converted."""
    counts = {"loads": 0, "conversions": 0}
    load, convert = torch.load, layout.convert_official

    def counting_load(f: object, *args: object, **kwargs: object) -> object:
        counts["loads"] += isinstance(f, (str, Path)) and Path(f).resolve() == path.resolve()
        return load(f, *args, **kwargs)

    def counting_convert(*args: object, **kwargs: object) -> object:
        counts["conversions"] += 1
        return convert(*args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    monkeypatch.setattr(layout, "convert_official", counting_convert)
    return counts


def _export(path: Path, out: Path, *extra: str) -> Path:
    words = [f"ckpt_path={path}", "format=torchscript", "parity=false", f"out={out / 'model.pt'}", *extra]
    return export(compose_cfg("export.yaml", words, out))


def test_an_official_file_is_read_and_converted_once_per_entry_point(
    official_file: tuple[Path, dict[str, torch.Tensor]],  # noqa: F811
    synthetic_data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, _ = official_file
    counts = counted_reads(monkeypatch, path)
    evaluate(eval_cfg(synthetic_data_dir, tmp_path / "eval", f"ckpt_path={path}"))
    assert counts == {"loads": 1, "conversions": 1}
    _export(path, tmp_path / "export", "image_size=[64,32]")
    assert counts == {"loads": 2, "conversions": 2}


def test_an_mdreid_checkpoint_is_read_once_per_entry_point(
    tiny_cfg, synthetic_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ckpt" / "last.ckpt"
    path.parent.mkdir()
    save_checkpoint(tiny_cfg, path)
    payload = torch.load(path, weights_only=True)
    payload["datamodule_hyper_parameters"] = {"high_bit_depth": {"mode": "range", "range": [0, 65535]}}
    torch.save(payload, path)
    counts = counted_reads(monkeypatch, path)
    tiny = [o for o in TINY_OVERRIDES if not o.startswith("callbacks=")]
    words = [*tiny, f"paths.data_dir={synthetic_data_dir}", f"ckpt_path={path}", "eval.plots=false"]
    evaluate(compose_cfg("eval.yaml", words, tmp_path / "eval"))
    assert counts["loads"] == 1
    _export(path, tmp_path / "export")
    assert counts["loads"] == 2
    embedder = Embedder.from_checkpoint(path)
    assert counts == {"loads": 3, "conversions": 0}
    assert embedder.rule.mode == "range" and embedder.rule.range == (0, 65535)  # the checkpoint's rule
