"""What a run prints: no third-party noise before the first useful line, and plain progress lines (epoch,
step, loss, img/s, ETA) when the output goes to a file, as in SLURM logs and CI. A piped run and a 2-process
DDP run are captured whole: every message once, no colour codes, none of the known noisy lines."""

from __future__ import annotations

import csv
import logging
import os
import pickle
import re
import subprocess
import sys
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.demos.boring_classes import BoringModel

from conftest import TINY_OVERRIDES
from mdreid.lightning_plugins.csv_logger import CSVLogger
from mdreid.lightning_plugins.model_summary import ParamSummary
from mdreid.lightning_plugins.plain_progress import PlainProgress, batch_size, progress_bar, progress_line
from mdreid.lightning_plugins.wandb_logger import WandbLogger
from mdreid.process.errors import MDReIDError
from mdreid.process.logs import (
    NO_ACCELERATOR,
    PYTREE_DEPRECATION,
    lightning_logs_to_root,
    quiet_known_noise,
    quiet_other_ranks,
)
from mdreid.process.output_dir import holds_nothing
from mdreid.process.worker_logs import _OncePerMessage, _RankFilter

# what a plain `python -m mdreid.train` printed before: (what it was, a fragment of it), matched ignoring case
NOISE = [
    ("Lightning's note on the model summary callback", "Trainer already configured with model summary"),
    ("Lightning's litlogger advert", "litlogger"),
    ("wandb's warning about the anonymous setting", "anonymous setting has no effect"),
    ("torch's LeafSpec deprecation from Lightning's _pytree", "LeafSpec"),
    ("a FLOPs column or total that reads 0", "flops"),
    ("a Rich progress bar redrawn into a file", "it/s"),  # its speed column (result tables use ━ too)
    ("Lightning's default on every checkpoint save", "`weights_only` was not set"),
    ("matplotlib's note on its (per-run) font cache", "generated new fontManager"),
    ("Lightning's report that a CPU run has no GPU", "GPU available: False"),
    ("Lightning's report that a CPU run has no TPU", "TPU available: False"),
    ("Lightning's advice to sync epoch-level values", "sync_dist=True"),
    ("a line printed by Lightning's own handler besides the application's", "INFO: "),
    ("a final test or validation labelled as one more epoch", "epoch 3 validation"),
]
ANSI = re.compile(r"\x1b\[")
# one log record as conf/hydra/default.yaml prints it: [time][logger][LEVEL] - message
RECORD = re.compile(r"^\[[-\d :,]+\](\[[^\]]+\]\[[A-Z]+\] - .*)$")
# a Python warning as the warnings module prints it: path:line: Category: message
WARNING = re.compile(r"^\S+\.py:\d+: (\w+(Warning|Error): .*)$")


def assert_clean(out: str) -> None:
    """No colour codes, none of the known noisy lines, and every log record and warning printed once."""
    lines = out.splitlines()
    coloured = [line for line in lines if ANSI.search(line)]
    assert not coloured, f"escape codes in a piped log: {coloured[:3]}"
    twice = sorted({line for line in lines if line.strip() and lines.count(line) > 1})
    assert not twice, f"lines printed more than once: {twice[:3]}"
    for what, fragment in NOISE:
        hits = [line for line in lines if fragment.lower() in line.lower()]
        assert not hits, f"{what}: {hits}"
    messages = [m[1] for m in (RECORD.match(line) or WARNING.match(line) for line in lines) if m]
    assert messages, out[-3000:]
    repeated = sorted({m for m in messages if messages.count(m) > 1})
    assert not repeated, f"printed more than once: {repeated}"


def run_train(overrides: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """``python -m mdreid.train`` with stdout and stderr piped, as in a SLURM or CI log; the whole output."""
    proc = subprocess.run(
        [sys.executable, "-m", "mdreid.train", *overrides],
        cwd=cwd,
        env=env or {**os.environ, "WANDB_MODE": "disabled"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


LINE = re.compile(
    r"^epoch (\d+)/2 \| step (\d+)/(\d+) \| batch (\d+)/(\d+) \| loss [-+.\deE]+ \| [.\d]+ img/s"
    r" \| ETA \d+:\d\d:\d\d$"
)


@pytest.mark.slow
def test_tiny_training_logs_progress_lines_and_no_noise(synthetic_data_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    wandb_home = tmp_path / "wandb-home"
    # offline W&B (make test disables it) with every W&B folder in tmp_path; not silent, so its warnings show
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env["WANDB_MODE"] = "offline"
    env.update({f"WANDB_{kind}DIR": str(wandb_home) for kind in ("", "CONFIG_", "CACHE_", "DATA_")})
    overrides = [
        *TINY_OVERRIDES,
        f"paths.data_dir={synthetic_data_dir}",
        f"hydra.run.dir={run_dir}",
        "callbacks=default",
        "logger=wandb",
        "trainer.enable_progress_bar=true",
        "trainer.enable_model_summary=true",
        "callbacks.progress_bar.every_n_steps=1",
        "test=false",
        "eval.plots=false",
    ]
    out = run_train(overrides, tmp_path, env)
    assert list((run_dir / "wandb").glob("offline-run-*")), "the W&B logger did not start: " + out[-2000:]
    assert_clean(out)
    assert "model summary" in out and "total params" in out
    assert "Seed set to 1111" in out  # Lightning's lines still show, in the application's format

    progress = [m for m in map(LINE.match, out.splitlines()) if m]
    assert progress, out[-3000:]
    epochs, steps = {int(m[1]) for m in progress}, [int(m[2]) for m in progress]
    total, batches = int(progress[-1][3]), int(progress[-1][5])
    assert epochs == {1, 2} and steps == list(range(1, total + 1)) and total == 2 * batches
    assert re.search(r"^epoch 2 validation \| \d+ batch(es)? in \d+:\d\d:\d\d \| val/score ", out, re.M)


@pytest.mark.slow
def test_two_process_ddp_log_is_clean(synthetic_data_dir: Path, tmp_path: Path) -> None:
    """Spawned workers print through the launching process: each message once, rank 0's info lines only, no
    sync_dist advice for the gathered scores. One fit (each spawn costs two fresh interpreters); a second set
    of workers repeating the first one's lines is test_worker_records_print_once_and_other_ranks_only_warn."""
    run_dir = tmp_path / "run"
    overrides = [
        *TINY_OVERRIDES,
        f"paths.data_dir={synthetic_data_dir}",
        f"hydra.run.dir={run_dir}",
        "trainer=ddp_spawn_cpu",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=true",
        "callbacks=default",  # last.ckpt written by rank 0: no note on its weights_only default
        "logger=none",
        "test=false",
        "eval.pairs=paper",
    ]
    out = run_train(overrides, tmp_path)
    assert_clean(out)
    assert out.count("All distributed processes registered") == 1
    assert "Initializing distributed: GLOBAL_RANK: 0" in out  # rank 0's info lines come through
    assert re.search(r"^epoch 1 validation \| .* \| val/score ", out, re.M)
    (run_log,) = run_dir.glob("*.log")  # <task_name>.log
    assert "Trainer.fit` stopped" in run_log.read_text()  # the workers' lines reach the run's log file


@pytest.mark.slow
def test_a_failed_config_check_leaves_no_run_folder(tmp_path: Path) -> None:
    env = {**os.environ, "WANDB_MODE": "disabled"}
    for run_dir, existed in ((tmp_path / "new", False), (tmp_path / "old", True)):
        if existed:
            run_dir.mkdir()
        proc = subprocess.run(
            [sys.executable, "-m", "mdreid.train", "trainer.max_epochs=0", f"hydra.run.dir={run_dir}"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 2 and "trainer.max_epochs=0" in proc.stderr, proc.stderr[-2000:]
        assert run_dir.exists() == existed  # a folder that was there before is never removed


def test_holds_nothing_counts_only_hydra_files_caches_and_an_empty_log(tmp_path: Path) -> None:
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text("seed: 1\n")
    (tmp_path / ".matplotlib").mkdir()
    (tmp_path / ".matplotlib" / "fontlist.json").write_text("{}")
    (tmp_path / "train.log").write_text("")
    assert holds_nothing(tmp_path)
    (tmp_path / "train.log").write_text("data not found\n")
    assert not holds_nothing(tmp_path)
    (tmp_path / "train.log").write_text("")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert not holds_nothing(tmp_path)


def test_progress_line_format() -> None:
    line = progress_line(
        epoch=2,
        max_epochs=30,
        step=40,
        total_steps=900,
        batch=10,
        batches=30,
        metrics={"loss": 2.34567},
        images_per_s=123.45,
        eta_s=754.4,
    )
    assert line == "epoch 2/30 | step 40/900 | batch 10/30 | loss 2.346 | 123.5 img/s | ETA 0:12:34"
    unknown = progress_line(
        epoch=1,
        max_epochs=-1,
        step=0,
        total_steps=float("inf"),
        batch=1,
        batches=float("inf"),
        metrics={},
        images_per_s=None,
        eta_s=None,
    )
    assert unknown == "epoch 1/? | step 0/? | batch 1/? | ? img/s | ETA ?"


def test_batch_size_counts_samples_of_any_batch_layout() -> None:
    assert batch_size({"RGB": torch.zeros(6, 3, 4, 4), "label": torch.zeros(6)}) == 6
    assert batch_size((torch.zeros(5, 3), torch.zeros(5))) == 5
    assert batch_size({"meta": "x"}) == 0


def test_progress_bar_style() -> None:
    # pytest captures stdout, so it is not a terminal here
    assert isinstance(progress_bar(every_n_steps=3), PlainProgress)
    assert isinstance(progress_bar("rich"), RichProgressBar)
    with pytest.raises(MDReIDError, match="callbacks.progress_bar.style"):
        progress_bar("fancy")
    with pytest.raises(MDReIDError, match="every_n_steps"):
        PlainProgress(0)


class LossModel(BoringModel):
    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = self.step(batch)
        self.log("loss", loss, prog_bar=True)
        return loss


def test_plain_progress_prints_every_n_steps_and_each_epoch_end(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    trainer = L.Trainer(
        max_epochs=2,
        limit_train_batches=5,
        limit_val_batches=2,
        callbacks=[PlainProgress(every_n_steps=2), ParamSummary(max_depth=1)],
        enable_model_summary=False,
        logger=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
        accelerator="cpu",
    )
    with caplog.at_level(logging.INFO, logger="mdreid.lightning_plugins.model_summary"):
        trainer.fit(LossModel())
    lines = capsys.readouterr().out.splitlines()
    steps = [re.search(r"\| step (\d+)/10 \|", line) for line in lines if " | step " in line]
    assert [int(m[1]) for m in steps if m] == [2, 4, 5, 6, 8, 10], lines
    trainer.validate(LossModel(), verbose=False)  # after fit: the final model's, no epoch of its own
    lines += capsys.readouterr().out.splitlines()
    validation = [line for line in lines if "validation | " in line]
    expected = [rf"epoch {e} validation \| 2 batches in \d+:\d\d:\d\d" for e in (1, 2)]  # no sanity check
    expected.append(r"validation \| 2 batches in \d+:\d\d:\d\d")
    assert len(validation) == 3 and all(map(re.fullmatch, expected, validation)), lines
    summary = "\n".join(
        r.getMessage() for r in caplog.records if r.name == "mdreid.lightning_plugins.model_summary"
    )
    assert "total params" in summary and "FLOPs" not in summary


def test_wandb_logger_leaves_out_the_anonymous_setting(tmp_path: Path) -> None:
    assert "anonymous" not in WandbLogger(save_dir=str(tmp_path), offline=True)._wandb_init
    assert (
        WandbLogger(save_dir=str(tmp_path), offline=True, anonymous=True)._wandb_init["anonymous"] == "allow"
    )


def test_only_the_known_deprecation_is_filtered() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_known_noise()
        message = PYTREE_DEPRECATION + ", use ..."
        warnings.warn_explicit(
            message, FutureWarning, "_pytree.py", 21, "lightning.pytorch.utilities._pytree"
        )
        warnings.warn_explicit(message, FutureWarning, "mine.py", 1, "mdreid.mine")
        warnings.warn_explicit(
            "something else", FutureWarning, "_pytree.py", 22, "lightning.pytorch.utilities._pytree"
        )
    assert [str(w.message) for w in caught] == [message, "something else"]


def test_only_the_no_accelerator_report_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    quiet_known_noise()
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    with caplog.at_level(logging.INFO, logger=logger.name):
        for message in (
            *sorted(NO_ACCELERATOR),
            "GPU available: True (cuda), used: True",
            "💡 Tip: litlogger",
        ):
            logger.info(message)
    assert [r.getMessage() for r in caplog.records] == ["GPU available: True (cuda), used: True"]


def test_lightning_prints_through_the_application_handlers_only() -> None:
    root, own = logging.getLogger(), logging.getLogger("lightning")
    console = logging.StreamHandler()
    own.addHandler(console)
    kept = root.handlers
    try:
        root.handlers = []
        lightning_logs_to_root()  # no application handlers (a notebook): Lightning keeps its own
        assert console in own.handlers
        root.handlers = [logging.NullHandler()]
        lightning_logs_to_root()
        assert console not in own.handlers and own.propagate
    finally:
        root.handlers = kept
        own.removeHandler(console)


def test_a_relaunched_rank_above_0_prints_only_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """trainer=ddp, torchrun and SLURM run the whole script in every rank; rank 0 prints for all of them."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    printed: list[str] = []
    sink = logging.Handler()
    sink.emit = lambda record: printed.append(record.getMessage())  # type: ignore[method-assign]
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [sink])
    logger = logging.getLogger("mdreid.some_rank")
    monkeypatch.setattr(logger, "level", logging.INFO)
    quiet_other_ranks()  # rank 0: nothing changes
    logger.warning("rank 0 warns")
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    quiet_other_ranks()
    logger.info("an info line")
    logger.warning("a warning every rank raises")
    logger.error("rank 1 failed")
    assert printed == ["rank 0 warns", "rank 1 failed"]


def test_worker_records_print_once_and_other_ranks_only_warn() -> None:
    printed: list[str] = []
    sink = logging.Handler()
    sink.emit = lambda record: printed.append(f"{record.levelname} {record.getMessage()}")  # type: ignore[method-assign]
    listener = _OncePerMessage(None, [sink], set())

    def record(level: int, msg: str, name: str = "lightning") -> logging.LogRecord:
        return logging.LogRecord(name, level, "x.py", 1, msg, None, None)

    sent = [
        (0, record(logging.INFO, "Starting with 2 processes")),
        (1, record(logging.INFO, "Initializing distributed: GLOBAL_RANK: 1")),
        (0, record(logging.WARNING, "few samples")),
        (1, record(logging.WARNING, "few samples")),  # the same warning from the other rank
        (1, record(logging.WARNING, "rank 1 only")),
        (0, record(logging.INFO, "Starting with 2 processes")),  # the next fit/test call's banner
        (0, record(logging.INFO, "Starting with 2 processes", name="mdreid")),  # another logger's line
    ]
    for rank, rec in sent:
        if _RankFilter(rank).filter(rec):
            listener.handle(rec)
    assert printed == [
        "INFO Starting with 2 processes",
        "WARNING few samples",
        "WARNING rank 1 only",
        "INFO Starting with 2 processes",
    ]


def test_csv_logger_continues_the_metrics_file_of_an_earlier_spawned_call(tmp_path: Path) -> None:
    """Spawned fit and test workers each get a copy of the launching process's logger: the test's copy must
    keep the fit's columns and rows (Lightning's own writer failed here with a ValueError)."""
    parent = CSVLogger(save_dir=tmp_path, name="csv", version="")
    assert parent.experiment is not None  # created before the workers start, as log_hyperparams does
    fit, test = pickle.loads(pickle.dumps(parent)), pickle.loads(pickle.dumps(parent))
    fit.log_metrics({"train/loss": 1.5}, step=0)
    fit.save()
    test.log_metrics({"test/score": 2.5}, step=1)
    test.save()
    with open(tmp_path / "csv" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows == [
        {"step": "0", "test/score": "", "train/loss": "1.5"},
        {"step": "1", "test/score": "2.5", "train/loss": ""},
    ]
