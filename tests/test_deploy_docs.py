"""Every example of docs/deploy.md runs as written: its Python blocks in one namespace, its shell lines
(``python -m mdreid.embed`` / ``mdreid.export``) in-process, in a folder holding the files they name."""

from __future__ import annotations

import csv
import json
import re
import shlex
import shutil
from pathlib import Path
from types import SimpleNamespace

import onnx
import pytest
import torch

from conftest import TINY_OVERRIDES, compose_cfg, save_weights_checkpoint
from mdreid.data.readers import load_benchmark
from mdreid.data.synthetic.generate import generate
from mdreid.embed.cli import main as embed_main
from mdreid.export import export
from mdreid.factory import build_module
from mdreid.feature_file import read_feature_file
from mdreid.modalities import SUBSETS

DOC = Path(__file__).resolve().parents[1] / "docs" / "deploy.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.S)


def _folder(tmp: Path) -> None:
    """``model.ckpt`` and the images, manifest and frame folders the examples name."""
    torch.manual_seed(0)
    module = build_module(
        compose_cfg("train.yaml", TINY_OVERRIDES),
        SimpleNamespace(num_classes=8, num_cameras=3, junk_rule="camera"),
    )
    save_weights_checkpoint(module, tmp / "model.ckpt")
    generate("rgbnt201", tmp / "data", ids=6, seed=0, preset="tiny")
    records = load_benchmark("rgbnt201", tmp / "data").query[:8]
    shutil.copy(records[0].paths[2], tmp / "night_tir.png")
    shutil.copy(records[1].paths[0], tmp / "day_rgb.jpg")
    shutil.copy(records[1].paths[1], tmp / "day_nir.jpg")
    with (tmp / "items.csv").open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["split", "pid", "camid", "rgb", "nir", "tir"])
        for i, r in enumerate(records):
            out.writerow(["query" if i % 2 else "gallery", r.pid, r.camid % 3, *r.paths])
    for m, name in enumerate(("rgb", "nir", "tir")):
        (tmp / "frames" / name).mkdir(parents=True)
        for i, r in enumerate(records[:3]):
            shutil.copy(r.paths[m], tmp / "frames" / name / f"{i:06d}.jpg")


def test_every_example_of_the_deploy_page_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    _folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for code in blocks("python"):
        exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102 - the page's own examples
    assert namespace["gallery"].subsets == ["RN", "N"] and namespace["scores"].shape == (1, 2)
    assert namespace["features"].shape == (2, namespace["backend"].dim)
    assert namespace["tracks"].shape == (1, 8)  # one track, started with the backend's vector
    assert namespace["tracker"].active_tracks[0].curr_feat.shape == (namespace["backend"].dim,)
    assert (tmp_path / "video" / "det.txt").is_file()
    commands = [
        line for block in blocks("bash") for line in block.replace("\\\n", " ").splitlines() if line.strip()
    ]
    assert len(commands) == 4
    for command in commands:
        args = shlex.split(command)
        assert args[:2] == ["python", "-m"], command
        if args[2] == "mdreid.embed":
            embed_main([*args[3:], "--no-progress"])
        else:
            assert args[2] == "mdreid.export"
            export(compose_cfg("export.yaml", args[3:], tmp_path / "export_run"))
    crops = read_feature_file(tmp_path / "crops.safetensors")
    assert crops.num_rows == len((tmp_path / "video" / "det.txt").read_text().splitlines())
    assert not bool(crops.present[(crops.frame >= 10) & (crops.frame <= 17), 0].any())  # no RGB at night
    assert read_feature_file(tmp_path / "items.safetensors").num_rows == 8
    assert read_feature_file(tmp_path / "frames.safetensors").names == [
        "000000.jpg",
        "000001.jpg",
        "000002.jpg",
    ]
    # the fp16 graph's parity report: every query subset, half-precision rounding, mAP within a point or so
    report = json.loads((tmp_path / "model.fp16.onnx.parity.json").read_text())
    assert [r["query"] for r in report["rows"]] == list(SUBSETS) and report["pairs"] == 49
    assert 1e-5 < report["max_abs_unit_feature"] < 1e-2 and report["max_abs_mAP_49"] < 5.0
    onnx.checker.check_model(
        str(tmp_path / "model.fp16.onnx")
    )  # a valid graph: nodes in order after the cast
    assert "parity with PyTorch on the synthetic RGBNT201 test split" in capsys.readouterr().out
