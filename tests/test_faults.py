"""Faults: a training run killed with SIGKILL between validations resumes from last.ckpt (written every epoch)
to exactly the numbers of an uninterrupted run (real ``python -m mdreid.train`` subprocesses, CPU, fixed seed), one stopped by SIGTERM or Ctrl-C exits non-zero, and
training does not depend on num_workers.

The in-process resume of tests/test_train.py stops cleanly between epochs; here the process dies mid-run.
DDP with 2 CPU processes vs 1: tests/test_sweeps.py::test_two_process_evaluation_equals_one_process.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from conftest import TINY_OVERRIDES
from mdreid.data.synthetic.generate import generate
from mdreid.train import train

pytestmark = pytest.mark.slow

EPOCHS = 3
VAL_EVERY = 2  # validation after epoch index 1 only: the kill after epoch 0 falls between validations
# one torch thread each: the uninterrupted and the killed run share 2 cores, and equal thread counts keep
# the float reductions (hence the numbers) identical between runs
RUN = [
    *TINY_OVERRIDES,
    "callbacks=default",
    "~callbacks.progress_bar",
    "~callbacks.model_summary",
    f"trainer.max_epochs={EPOCHS}",
    f"model.schedule.epochs={EPOCHS}",  # the LR schedule must not depend on where a run stopped
    f"trainer.check_val_every_n_epoch={VAL_EVERY}",
    "eval.plots=false",
    "runtime.torch_threads=1",
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("faults-data")
    generate("rgbnt201", root / "synthetic", ids=12, seed=0, preset="tiny")
    return root


def start(data_dir: Path, run_dir: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "WANDB_MODE": "disabled"}
    args = [*RUN, f"paths.data_dir={data_dir}", f"hydra.run.dir={run_dir}", *extra]
    return subprocess.Popen(
        [sys.executable, "-m", "mdreid.train", *args],
        cwd=run_dir.parent,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> None:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]


def wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the run ended before writing {path}"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def per_epoch(run_dir: Path) -> dict[int, dict[str, float]]:
    """The epoch-level training losses and validation metrics the CSV logger wrote, by epoch."""
    out: dict[int, dict[str, float]] = {}
    for row in csv.DictReader((run_dir / "csv" / "metrics.csv").open()):
        values = {k: float(v) for k, v in row.items() if v and (k.endswith("_epoch") or k.startswith("val/"))}
        if values:
            out.setdefault(int(row["epoch"]), {}).update(values)
    return out


def test_sigkill_then_resume_from_last_ckpt_equals_an_uninterrupted_run(
    data_dir: Path, tmp_path: Path
) -> None:
    full = start(data_dir, tmp_path / "full")
    victim = start(data_dir, tmp_path / "killed")
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    wait_for(last, victim)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=60)
    assert victim.returncode == -signal.SIGKILL
    # checkpoints are written atomically: whatever the kill interrupted, every .ckpt left loads whole
    for ckpt in last.parent.glob("*.ckpt"):
        torch.load(ckpt, map_location="cpu", weights_only=False)
    killed_at = torch.load(last, map_location="cpu", weights_only=False)["epoch"]
    assert killed_at < EPOCHS - 1, "the run finished before it was killed"
    assert (killed_at + 1) % VAL_EVERY, "last.ckpt must not wait for a validation epoch"

    resumed = start(data_dir, tmp_path / "resumed", f"ckpt_path={last}")
    finish(resumed)
    finish(full)

    full_run, got = per_epoch(tmp_path / "full"), per_epoch(tmp_path / "resumed")
    # the last epoch was no validation epoch: both runs validate the final model once more (row EPOCHS)
    assert "val/score" in full_run.pop(EPOCHS) and "val/score" in got.pop(EPOCHS)
    expected = {e: v for e, v in full_run.items() if e > killed_at}
    assert sorted(got) == sorted(expected) == list(range(killed_at + 1, EPOCHS))
    assert all("train/loss_epoch" in v for v in got.values())  # at most one epoch (the killed one) redone
    assert [e for e, v in got.items() if "val/score" in v] == [VAL_EVERY - 1]
    assert got == expected  # exact: same seed, same data order, same threads
    full_json, resumed_json = (
        json.loads((tmp_path / r / "metrics.json").read_text()) for r in ("full", "resumed")
    )
    assert len(full_json["rows"]) == 49 and resumed_json["rows"] == full_json["rows"]
    assert resumed_json["groups"] == full_json["groups"]


@pytest.mark.parametrize(
    ("signum", "name"), [(signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT (Ctrl-C)")], ids=["term", "int"]
)
def test_a_stop_signal_exits_non_zero_with_the_resume_hint(
    data_dir: Path, tmp_path: Path, signum: int, name: str
) -> None:
    """Lightning ends a SIGTERM-stopped fit with exit code 0 and a Ctrl-C with 1 after its own shutdown
    lines; a preempted or interrupted run must not look finished, and must say where to resume."""
    run = start(data_dir, tmp_path / "stopped")
    last = tmp_path / "stopped" / "checkpoints" / "last.ckpt"
    wait_for(last, run)
    run.send_signal(signum)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 128 + signum, err[-3000:]
    assert err.count("error:") == 1 and "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    assert f"error: stopped by {name} before the run finished; resume with ckpt_path={last}" in err
    assert not (tmp_path / "stopped" / "metrics.json").exists()
    torch.load(last, map_location="cpu", weights_only=True)  # whole, and plain data


@pytest.fixture
def torch_threads() -> Iterator[None]:
    """``train`` sets the process-wide thread count (``torch_threads``); give the other tests theirs back."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def step_losses(run_dir: Path) -> list[tuple[int, float]]:
    rows = csv.DictReader((run_dir / "csv" / "metrics.csv").open())
    return [(int(r["step"]), float(r["train/loss_step"])) for r in rows if r.get("train/loss_step")]


def test_training_losses_do_not_depend_on_num_workers(tiny_cfg, tmp_path: Path, torch_threads: None) -> None:
    losses = {}
    for workers in (0, 2):
        run_dir = tmp_path / f"workers{workers}"
        cfg = tiny_cfg(
            "train.yaml",
            f"data.num_workers={workers}",
            "trainer.max_epochs=1",
            "trainer.log_every_n_steps=1",
            "+trainer.limit_val_batches=0",
            "data.val=none",  # all 8 identities: 4 steps per epoch to compare
            "test=false",
            "runtime.torch_threads=1",
            output_dir=run_dir,
        )
        metrics = train(cfg)
        losses[workers] = (step_losses(run_dir), metrics["train/loss_epoch"])
    assert len(losses[0][0]) == 4  # every step of the epoch was compared
    assert losses[2] == losses[0]
