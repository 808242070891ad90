"""End-to-end training on CPU: the loss falls, metrics.json is complete, checkpoints resume exactly."""

from __future__ import annotations

import csv
import json
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from checkpoint_files import NUM_CAMERAS, save_checkpoint
from conftest import TINY_OVERRIDES, compose_cfg
from mdreid.data.readers import load_benchmark
from mdreid.eval import evaluate
from mdreid.factory import build_module, load_module
from mdreid.process.errors import MDReIDError
from mdreid.train import train


def epoch_losses(run_dir: Path) -> list[float]:
    rows = list(csv.DictReader((run_dir / "csv" / "metrics.csv").open()))
    return [float(r["train/loss_epoch"]) for r in rows if r.get("train/loss_epoch")]


def check_protocol(record: dict, data_dir: Path, epoch: int) -> None:
    """metrics.json's protocol record against the files on disk: split sizes, junk rule, selection, versions."""
    raw = load_benchmark("rgbnt201", data_dir / "synthetic")
    splits = record["splits"]
    raw_ids = {r.pid for r in raw.train}
    assert splits["train"]["ids"] + splits["val"]["ids"] == len(raw_ids)
    assert splits["train"]["images"] + splits["val"]["gallery"] == len(raw.train)
    assert splits["val"]["query"] == splits["val"]["gallery"]  # RGBNT201: every held-out image is a query
    assert splits["test"] == {
        "ids": len({r.pid for r in raw.query}),
        "query": len(raw.query),
        "gallery": len(raw.gallery),
    }
    assert record["junk_rule"] == "camera" and record["selected_on"] == "validation"
    assert record["selection"] == {"checkpoint": "last-epoch", "sweep_metric": "val/score", "epoch": epoch}
    assert record["seed"] == 1111 and record["command"].startswith("python -m mdreid.train")
    assert record["versions"]["torch"] == version("torch")
    assert {"mdreid", "torch", "lightning", "open_clip", "git_commit"} <= set(record["versions"])


@pytest.mark.slow
def test_two_epoch_run_learns_and_writes_metrics(
    tiny_cfg, synthetic_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cfg = tiny_cfg(
        "train.yaml",
        "trainer.max_epochs=3",
        "callbacks=default",
        "~callbacks.progress_bar",
        "~callbacks.model_summary",
        "trainer.check_val_every_n_epoch=10",  # no validation epoch: last.ckpt must not wait for one
    )
    metrics = train(cfg)
    run = Path(cfg.paths.output_dir)
    losses = epoch_losses(run)
    assert len(losses) == 3 and losses[-1] < losses[0]
    payload = json.loads((run / "metrics.json").read_text())
    assert len(payload["rows"]) == 49
    check_protocol(payload["protocol"], synthetic_data_dir, epoch=3)
    # no validation epoch ran in fit: the final model was validated once, and that is what a sweep gets
    assert payload["validation"]["epoch"] == 3 and metrics["val/score"] == payload["validation"]["val/score"]
    assert {r["query"] for r in payload["rows"]} == {"R", "N", "T", "RN", "RT", "NT", "RNT"}
    assert metrics["test/score"] == pytest.approx(
        (payload["groups"]["matched/RNT->RNT/mAP"] + payload["groups"]["matched/RNT->RNT/R1"]) / 2
    )
    assert (run / "checkpoints" / "last.ckpt").is_file() and not list(run.glob("checkpoints/epoch_*"))
    assert payload["epoch"] == 3 and payload["global_step"] > 0 and payload["global_step"] % 3 == 0

    # the evaluation of that checkpoint says which epoch and step it holds, and gives the same table
    tiny = [o for o in TINY_OVERRIDES if not o.startswith("callbacks=")]
    eval_cfg = compose_cfg(
        "eval.yaml",
        [*tiny, f"paths.data_dir={synthetic_data_dir}", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}"],
        tmp_path / "eval",
    )
    capsys.readouterr()
    evaluate(eval_cfg)
    printed = capsys.readouterr().out  # the protocol record as one block, before the tables
    assert "protocol: rgbnt201 (junk rule: camera)" in printed
    assert "selected on: validation; checkpoint: last-epoch (epoch 3)" in printed
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert (evaluated["epoch"], evaluated["global_step"]) == (3, payload["global_step"])
    assert evaluated["rows"] == payload["rows"]
    # the evaluation carries how the checkpoint was trained and selected
    assert evaluated["protocol"]["training"]["splits"] == payload["protocol"]["splits"]
    assert evaluated["protocol"]["selected_on"] == "validation"
    assert evaluated["protocol"]["splits"]["test"] == payload["protocol"]["splits"]["test"]


@pytest.mark.slow
def test_resume_from_last_checkpoint_matches_uninterrupted_run(tiny_cfg, tmp_path: Path) -> None:
    common = [
        "callbacks=default",
        "~callbacks.progress_bar",
        "~callbacks.model_summary",
        "test=false",
        "trainer.check_val_every_n_epoch=5",
        "model.schedule.epochs=3",
    ]
    full = tiny_cfg("train.yaml", *common, "trainer.max_epochs=3", output_dir=tmp_path / "full")
    train(full)
    first = tiny_cfg("train.yaml", *common, "trainer.max_epochs=2", output_dir=tmp_path / "first")
    train(first)
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    resumed = tiny_cfg(
        "train.yaml", *common, "trainer.max_epochs=3", f"ckpt_path={last}", output_dir=tmp_path / "resumed"
    )
    train(resumed)
    assert epoch_losses(tmp_path / "resumed")[-1] == pytest.approx(
        epoch_losses(tmp_path / "full")[-1], rel=1e-5
    )
    a = torch.load(tmp_path / "full" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)


@pytest.mark.slow
def test_val_none_and_val_test_are_named_in_every_output(
    tiny_cfg, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """data.val=none: no validation loop and no selection metric; data.val=test: the old way, named in the
    start-up warning, metrics.json, the checkpoint and the selection of the sweep value."""
    quiet = [
        "callbacks=default",
        "~callbacks.progress_bar",
        "~callbacks.model_summary",
        "trainer.max_epochs=1",
    ]
    final = tiny_cfg("train.yaml", *quiet, "data.val=none", output_dir=tmp_path / "none")
    assert final.optimized_metric is None  # nothing to select on
    metrics = train(final)
    assert not [k for k in metrics if k.startswith("val/")]
    record = json.loads((tmp_path / "none" / "metrics.json").read_text())["protocol"]
    assert record["selected_on"] == "none" and record["splits"]["val"] is None

    caplog.clear()
    old = tiny_cfg("train.yaml", *quiet, "data.val=test", output_dir=tmp_path / "test")
    metrics = train(old)
    assert "data.val=test: validation runs on the TEST split" in caplog.text
    record = json.loads((tmp_path / "test" / "metrics.json").read_text())["protocol"]
    assert record["selected_on"] == "test" and record["splits"]["val"]["source"] == "the test split"
    assert record["validation"].startswith("TEST split")
    # validating on test scores the same images as testing: the same number for the same weights
    assert metrics["val/score"] == pytest.approx(metrics["test/score"], abs=1e-6)
    saved = torch.load(tmp_path / "test" / "checkpoints" / "last.ckpt", weights_only=False)
    assert saved["protocol"]["selected_on"] == "test"


def test_fine_tuning_trains_new_identity_classifiers_for_another_identity_count(
    tiny_cfg, tmp_path: Path
) -> None:
    """A checkpoint of 12 identities into a run of 5 (e.g. all identities, then some held out for validation):
    the heads start anew, every other tensor is the checkpoint's; without new_heads the file is refused."""
    saved = save_checkpoint(tiny_cfg, tmp_path / "all.ckpt")
    cfg = tiny_cfg("train.yaml")
    torch.manual_seed(1)
    run = build_module(cfg, SimpleNamespace(num_classes=5, num_cameras=NUM_CAMERAS, junk_rule="camera"))
    fresh = {k: v.clone() for k, v in run.state_dict().items()}
    with pytest.raises(MDReIDError, match="does not fit the configured model"):
        load_module(tmp_path / "all.ckpt", run)
    load_module(tmp_path / "all.ckpt", run, new_heads=True)
    heads = [k for k in fresh if k.endswith(".classifier.weight")]
    assert heads and all(run.state_dict()[k].shape[0] == 5 for k in heads)
    for key, value in run.state_dict().items():
        expected = fresh[key] if key in heads else saved.state_dict()[key]
        assert torch.equal(value, expected), key
