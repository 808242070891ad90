"""The bad-input table: each ordinary mistake, run as the real CLI would be, ends with exit code 2, one
``error:`` line naming the key or file, no traceback, and nothing written outside the run folder."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import lightning
import pytest
import torch

from conftest import TINY_OVERRIDES, compose_cfg, run_in_fresh_home
from mdreid.factory import build_module
from mdreid.module import ReIDModule

pytestmark = pytest.mark.slow

TRAIN = [*TINY_OVERRIDES, "trainer.max_epochs=1", "eval.plots=false", "runtime.torch_threads=1"]
EVAL = [o for o in TRAIN if not o.startswith("callbacks=")]  # eval.yaml has no callbacks group
PRETRAIN = ["data.pool.ids=8", "trainer.max_epochs=1"]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, synthetic_data_dir: Path) -> SimpleNamespace:
    """Data, a good tiny checkpoint (weights only), a NaN one, a truncated one, a plain file."""
    root = tmp_path_factory.mktemp("bad-inputs")
    cfg = compose_cfg("train.yaml", [*TRAIN, f"paths.data_dir={synthetic_data_dir}"], root / "probe")
    data = SimpleNamespace(num_classes=8, num_cameras=4, junk_rule="camera")
    module = build_module(cfg, data)
    payload = {
        "state_dict": module.state_dict(),
        ReIDModule.CHECKPOINT_HYPER_PARAMS_KEY: dict(module.hparams),
        "pytorch-lightning_version": lightning.__version__,
    }
    good = root / "good.ckpt"
    torch.save(payload, good)
    nan = dict(payload, state_dict={**payload["state_dict"]})
    nan["state_dict"]["net.mdl.encoder.proj"] = torch.full_like(module.net.mdl.encoder.proj, float("nan"))
    torch.save(nan, root / "nan.ckpt")
    (root / "cut.ckpt").write_bytes(good.read_bytes()[:5000])
    (root / "plain.txt").write_text("not a folder")
    return SimpleNamespace(
        root=root,
        data=synthetic_data_dir,
        good=good,
        nan=root / "nan.ckpt",
        cut=root / "cut.ckpt",
        plain=root / "plain.txt",
        folder=root,
    )


# (entry point, arguments, what the error line must contain); {name} is filled from the files fixture
CASES: dict[str, tuple[str, list[str], str]] = {
    "train/num_workers": (
        "train",
        [*TRAIN, "data.num_workers=-1"],
        "data.num_workers=-1: use an integer >= 0",
    ),
    "train/max_epochs": (
        "train",
        [*TRAIN, "trainer.max_epochs=0"],
        "trainer.max_epochs=0: train for at least 1",
    ),
    "train/batch_size": (
        "train",
        [*TRAIN, "data.batch_size=7"],
        "data.batch_size=7 must be a positive multiple",
    ),
    "train/misspelt_key": (
        "train",
        [*TRAIN, "+model.loss.rol_wieght=1"],
        "+model.loss.rol_wieght: model.loss.rol_wieght is no key of this config; did you mean model.loss.rol_weight?",
    ),
    "train/old_switch_name": (
        "train",
        [*TRAIN, "+model.mdl.enabled=false"],
        "+model.mdl.enabled: model.mdl.enabled is no key of this config; it is now model.mdl.decoupled",
    ),
    "train/misspelt_vision_key": (
        "train",
        [*TRAIN, "+model.backbone.vision.head=2"],
        "model.backbone.vision.head is no key of this config; did you mean model.backbone.vision.heads?",
    ),
    "train/dropout_kind": (
        "train",
        [*TRAIN, "data.modality_dropout={{p:often}}"],
        "data.modality_dropout.p='often': expected a number",
    ),
    "train/root_is_file": ("train", [*TRAIN, "data.root={plain}"], "is a file; point it at a folder"),
    "train/root_read_only": (
        "train",
        [*TRAIN, "data.root=/sys/mdreid-probe"],
        "cannot write the synthetic copy",
    ),
    "train/no_clip_weights": (
        "train",
        [
            *(o for o in TRAIN if not o.startswith("model.backbone.")),
            "model/backbone=vit_b16",
            "model.backbone.weights=null",
        ],
        "model.backbone.weights is not set",
    ),
    "train/resume_missing": ("train", [*TRAIN, "ckpt_path={root}/gone.ckpt"], "gone.ckpt' does not exist"),
    "train/resume_folder": ("train", [*TRAIN, "ckpt_path={folder}"], "is a folder; point it at a checkpoint"),
    "train/resume_truncated": ("train", [*TRAIN, "ckpt_path={cut}"], "is not a readable checkpoint"),
    "train/resume_weights_only": ("train", [*TRAIN, "ckpt_path={good}"], "holds weights only"),
    "eval/nan_weights": (
        "eval",
        [*EVAL, "ckpt_path={nan}"],
        "holds non-finite weights (NaN or Inf) in net.mdl",
    ),
    "eval/other_model": (
        "eval",
        [*EVAL, "ckpt_path={good}", "model.backbone.vision.layers=3"],
        "model.backbone.vision.layers=3 (the checkpoint has 2)",
    ),
    "export/folder": ("export", ["ckpt_path={folder}"], "is a folder; point it at a checkpoint"),
    "export/format": ("export", ["ckpt_path={good}", "format=tflite"], "format='tflite' is not supported"),
    "pretrain/resume_missing": (
        "pretrain",
        [*PRETRAIN, "ckpt_path={root}/gone.ckpt"],
        "gone.ckpt' does not exist",
    ),
    "pretrain/init_missing": (
        "pretrain",
        [*PRETRAIN, "init_weights={root}/gone.safetensors"],
        "no such tower file",
    ),
    "pretrain/misspelt_optim_key": (
        "pretrain",
        [*PRETRAIN, "+optim.momentum=0.9"],
        "+optim.momentum: optim.momentum is no key of this config; known here: optim.lr, optim.weight_decay, "
        "optim.warmup_epochs, optim.temperature",
    ),
    "zero_shot/tower_missing": (
        "pretrain.zero_shot",
        ["out={root}/gone.safetensors"],
        "gone.safetensors not found",
    ),
    "data/missing_root": ("data", ["stats", "--dataset", "rgbnt201", "--root", "{root}/nowhere"], "nowhere"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_error_line(case: str, files: SimpleNamespace, tmp_path: Path) -> None:
    entry, args, expected = CASES[case]
    if case == "train/root_read_only" and not Path("/sys/kernel").is_dir():
        pytest.skip("no read-only /sys on this machine")
    names = vars(files)
    args = [a.format(**names) for a in args]
    if entry != "data":
        args += [f"paths.data_dir={files.data}", f"hydra.run.dir={tmp_path / 'work' / 'run'}"]
    proc, outside = run_in_fresh_home(entry, args, tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], proc.stderr[-2000:]
    assert not outside, f"written outside the run folder: {outside}"
