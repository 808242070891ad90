"""One run per folder: a folder a live run holds is refused before anything is written into it; a killed
run's folder is taken over (resumable) at once."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mdreid.process.errors import MDReIDError
from mdreid.process.run_lock import LOCK_NAME, RunLock, is_primary_process

HOLD = """
import sys, time
from mdreid.process.run_lock import RunLock
RunLock(sys.argv[1], "hydra.run.dir").acquire()
print("locked", flush=True)
time.sleep(600)
"""


@pytest.fixture
def holder(tmp_path: Path):
    """A live process holding the lock on ``tmp_path / 'run'``."""
    folder = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    yield folder, proc
    proc.kill()
    proc.wait(timeout=60)


def test_a_second_run_in_a_live_runs_folder_is_refused_in_one_line(holder, tmp_path: Path) -> None:
    folder, proc = holder
    run = subprocess.run(
        [sys.executable, "-m", "mdreid.train", f"hydra.run.dir={folder}", "seed=2"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "WANDB_MODE": "disabled"},
    )
    assert run.returncode == 2, run.stderr[-2000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert f"hydra.run.dir={folder} is in use by another run (pid {proc.pid} on" in errors[0]
    assert sorted(p.name for p in folder.iterdir()) == [LOCK_NAME]  # no .hydra/, no log, nothing


def test_a_killed_runs_lock_is_stale_and_taken_over(holder, caplog) -> None:
    folder, proc = holder
    with pytest.raises(MDReIDError, match="is in use by another run"):
        RunLock(folder, "hydra.run.dir").acquire()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    lock = RunLock(folder, "hydra.run.dir")
    with caplog.at_level(logging.WARNING, logger="mdreid.process.run_lock"):
        lock.acquire()
    assert f"taking over the stale lock of a run that ended (pid {proc.pid} on" in caplog.text
    assert json.loads((folder / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (folder / LOCK_NAME).exists()
    again = RunLock(folder, "hydra.run.dir")
    again.acquire()  # free again
    again.release()


def test_only_rank_zero_takes_the_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    assert is_primary_process()
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert not is_primary_process()


def test_a_finished_runs_folder_is_refused_for_a_new_run(tmp_path: Path) -> None:
    """A new train pointed at a finished run's folder stops in one line before it writes anything; resuming
    (ckpt_path) and an explicit overwrite=true pass."""
    from conftest import compose_cfg
    from mdreid.process.output_dir import refuse_finished_run

    folder = tmp_path / "run"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    (folder / "metrics.json").write_text("{}")
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    run = subprocess.run(
        [sys.executable, "-m", "mdreid.train", f"hydra.run.dir={folder}"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "WANDB_MODE": "disabled"},
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert run.stderr.strip().splitlines() == [
        f"error: hydra.run.dir={folder} holds a finished run (checkpoints/last.ckpt, metrics.json); resume it "
        f"with ckpt_path={folder}/checkpoints/last.ckpt, choose another folder (hydra.run.dir=...), or replace "
        "its results with overwrite=true"
    ]
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before
    for allowed in ([f"ckpt_path={folder}/checkpoints/last.ckpt"], ["overwrite=true"]):
        refuse_finished_run(
            folder, compose_cfg("train.yaml", [f"hydra.run.dir={folder}", *allowed]), "hydra.run.dir"
        )
    with pytest.raises(
        MDReIDError, match="holds a finished run.*choose another folder"
    ):  # eval never resumes
        refuse_finished_run(
            folder, compose_cfg("eval.yaml", [f"ckpt_path={folder}/checkpoints/last.ckpt"]), "d"
        )
