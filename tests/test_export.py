"""``python -m mdreid.export``: the exported graphs compute the model's features for any batch and camera."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from checkpoint_files import NUM_CAMERAS, save_checkpoint
from mdreid.data.readers import load_benchmark
from mdreid.data.synthetic.generate import generate
from mdreid.embed.embedder import Embedder
from mdreid.export import example_inputs, export, export_extractor
from mdreid.export.parity import parity_report
from mdreid.factory import load_module
from mdreid.modalities import MODALITIES, SUBSETS
from mdreid.models.feature_extractor import FeatureExtractor
from mdreid.module import ReIDModule
from mdreid.process.errors import MDReIDError
from test_config_keys import one_error

SIZE = (64, 32)  # TINY_OVERRIDES' data.image_size


@pytest.fixture
def ckpt(tiny_cfg: Callable[..., DictConfig], tmp_path: Path) -> tuple[Path, ReIDModule]:
    path = tmp_path / "ckpts" / "last.ckpt"
    path.parent.mkdir()
    return path, save_checkpoint(tiny_cfg, path)


def images(batch: int, seed: int) -> torch.Tensor:
    return torch.randn(batch, 3, *SIZE, generator=torch.Generator().manual_seed(seed))


def run_cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MDREID_VERBOSE": "0", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, "-m", "mdreid.export", *argv, f"hydra.run.dir={cwd / 'run'}"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=cwd,
    )


@pytest.mark.parametrize("model", ["mdreid", "baseline"])
def test_extractor_is_the_checkpoint_models_per_modality_path(tiny_cfg, tmp_path: Path, model: str) -> None:
    """load_module rebuilds the saved weights; the extractor gives MDReIDNet.extract's rows for any modality."""
    path = tmp_path / "m.ckpt"
    saved = save_checkpoint(tiny_cfg, path, f"model={model}")
    loaded = load_module(path)
    assert not loaded.training
    extractor = FeatureExtractor(loaded.net)
    assert extractor.output_names == (("sp", "sh") if model == "mdreid" else ("sp",))
    x, cams = images(4, seed=1), torch.tensor([0, 2, 1, 2])
    with torch.no_grad():
        for m, key in enumerate(MODALITIES):
            present = torch.zeros(4, 3, dtype=torch.bool)
            present[:, m] = True
            sp, sh = saved.net.extract({key: x}, present, cams)
            feats = extractor(x, cams)
            torch.testing.assert_close(feats[0], sp[:, m])
            if model == "mdreid":
                torch.testing.assert_close(feats[1], sh[:, m])
            else:
                assert sh is None and len(feats) == 1


@pytest.mark.slow
def test_onnx_cli_dynamic_batch_and_camera_embedding(ckpt, tiny_cfg, tmp_path: Path) -> None:
    path, module = ckpt
    out = tmp_path / "exported" / "feat.onnx"
    proc = run_cli(f"ckpt_path={path}", "format=onnx", f"out={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    check_parity_report(out, proc.stdout, tiny_cfg, tmp_path)
    assert f"wrote {out}" in proc.stdout and "image [batch, 3, 64, 32] float32" in proc.stdout
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image", "camid"]
    assert [o.name for o in session.get_outputs()] == ["sp", "sh"]
    extractor = FeatureExtractor(module.net)
    x = images(5, seed=2)  # the export example had 2 rows
    results = []
    for cam in (0, 2):
        cams = torch.full((5,), cam, dtype=torch.long)
        got = session.run(None, {"image": x.numpy(), "camid": cams.numpy()})
        with torch.no_grad():
            want = extractor(x, cams)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w.numpy(), atol=1e-4, rtol=0)
        results.append(got[0])
    assert np.abs(results[0] - results[1]).max() > 1e-2  # the camera id reaches the graph


def test_torchscript_default_out_next_to_checkpoint(ckpt, capsys: pytest.CaptureFixture[str]) -> None:
    path, module = ckpt
    cfg = OmegaConf.create(
        {
            "ckpt_path": str(path),
            "format": "torchscript",
            "out": None,
            "opset": 18,
            "batch_size": 2,
            "seed": 0,
        }
    )
    out = export(cfg)
    assert out == path.with_suffix(".pt") and out.is_file()
    printed = capsys.readouterr().out
    assert f"wrote {out} (torchscript)" in printed and "output sh    [batch, 32] float32" in printed
    traced = torch.jit.load(str(out))
    x, cams = images(3, seed=3), torch.tensor([2, 0, 1])
    with torch.no_grad():
        for g, w in zip(traced(x, cams), FeatureExtractor(module.net)(x, cams), strict=True):
            torch.testing.assert_close(g, w, atol=1e-5, rtol=0)


def test_bad_inputs_are_one_line_errors(ckpt, tmp_path: Path) -> None:
    path, module = ckpt
    missing = OmegaConf.create({"ckpt_path": str(tmp_path / "gone.ckpt"), "format": "onnx"})
    with pytest.raises(MDReIDError, match=r"ckpt_path='.*gone\.ckpt' does not exist"):
        export(missing)
    not_ckpt = tmp_path / "notes.txt"
    not_ckpt.write_text("hello")
    with pytest.raises(MDReIDError, match="is not a readable checkpoint"):
        load_module(not_ckpt)
    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": module.state_dict()}, plain)
    with pytest.raises(MDReIDError, match="has no model hyper-parameters"):
        load_module(plain)
    with pytest.raises(MDReIDError, match="batch_size=1"):
        example_inputs(SIZE, NUM_CAMERAS, 1, seed=0)
    with pytest.raises(MDReIDError, match="use one of: onnx, torchscript"):
        export_extractor(
            FeatureExtractor(module.net), example_inputs(SIZE, 3, 2, 0), tmp_path / "x", "tflite"
        )


@pytest.mark.slow
def test_cli_bad_format_exits_2_with_one_line(ckpt, tmp_path: Path) -> None:
    proc = run_cli(f"ckpt_path={ckpt[0]}", "format=tflite", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: format='tflite' is not supported; use one of: onnx, torchscript"
    ], proc.stderr


def check_parity_report(out: Path, printed: str, tiny_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    """The export's parity report covers the 7 query subsets and fp32 agrees to float rounding (fp16: the
    deploy page's example, tests/test_deploy_docs.py); the same check catches a graph of other weights."""
    report = json.loads(Path(f"{out}.parity.json").read_text())
    assert [r["query"] for r in report["rows"]] == list(SUBSETS) and report["pairs"] == 49
    assert "| RNT |" in Path(f"{out}.parity.md").read_text() and "parity with PyTorch" in printed
    assert report["max_abs_unit_feature"] < 1e-5 and report["max_abs_mAP_49"] < 1e-3
    other = save_checkpoint(tiny_cfg, tmp_path / "other.ckpt", "model.sie_coe=2.0")
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    generate("rgbnt201", tmp_path / "data", ids=6, seed=1, preset="tiny")
    records = load_benchmark("rgbnt201", tmp_path / "data").query[:12]
    wrong = parity_report(Embedder(other, device="cpu"), out, "onnx", "fp32", records)
    assert wrong["max_abs_unit_feature"] > 1e-2
    with pytest.raises(MDReIDError, match="fp16=true converts ONNX graphs"):
        export(OmegaConf.create({"ckpt_path": "x.ckpt", "format": "torchscript", "fp16": True}))


def test_an_unwritable_output_names_out(
    ckpt, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A checkpoint on a read-only mount: the file goes next to it by default, and out=FILE is the fix (export
    has no run folder of results that hydra.run.dir or paths.log_dir would move)."""
    if not Path("/sys/kernel").is_dir():
        pytest.skip("no read-only /sys on this machine")
    path, _ = ckpt
    argv = [
        f"ckpt_path={path}",
        "format=torchscript",
        "out=/sys/mdreid.pt",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    line = one_error("export", argv, monkeypatch, capsys)
    assert line == "error: cannot write to /sys: Permission denied; write the file elsewhere with out=FILE"
