"""Training progress that reads well in a log file: one plain line every N steps.

A Rich progress bar redraws one terminal line in place; written to a file (SLURM, CI) it shows nothing
useful for minutes. ``progress_bar`` picks the Rich bar on a terminal and ``PlainProgress`` otherwise.
"""

from __future__ import annotations

import datetime
import math
import sys
import time
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar
from lightning.pytorch.trainer.states import TrainerFn

from mdreid.process.errors import MDReIDError

STYLES = ("auto", "rich", "plain")


def progress_bar(style: str = "auto", every_n_steps: int = 10) -> ProgressBar:
    """The progress callback: ``auto`` is the Rich bar when stdout is a terminal, plain lines otherwise."""
    if style not in STYLES:
        raise MDReIDError(f"callbacks.progress_bar.style={style!r}: use one of {', '.join(STYLES)}")
    if style == "rich" or (style == "auto" and sys.stdout.isatty()):
        return RichProgressBar()
    return PlainProgress(every_n_steps)


def batch_size(batch: Any) -> int:
    """Samples in a batch: the length of its first tensor (a multi-modal sample counts once)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.ndim else 1
    values = (
        batch.values() if isinstance(batch, Mapping) else batch if isinstance(batch, list | tuple) else ()
    )
    for value in values:
        if (n := batch_size(value)) > 0:
            return n
    return 0


def _count(value: float | None) -> str:
    return str(int(value)) if value is not None and math.isfinite(value) and value >= 0 else "?"


def duration(seconds: float | None) -> str:
    """``H:MM:SS``, or ``?`` while unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    return str(datetime.timedelta(seconds=round(max(0.0, seconds))))


def progress_line(
    *,
    epoch: int,
    max_epochs: float | None,
    step: int,
    total_steps: float | None,
    batch: int,
    batches: float | None,
    metrics: Mapping[str, float],
    images_per_s: float | None,
    eta_s: float | None,
) -> str:
    """``epoch 2/30 | step 40/900 | batch 10/30 | loss 2.345 | 123.4 img/s | ETA 0:12:34``."""
    parts = [
        f"epoch {epoch}/{_count(max_epochs)}",
        f"step {step}/{_count(total_steps)}",
        f"batch {batch}/{_count(batches)}",
    ]
    parts += [f"{name} {value:.4g}" for name, value in metrics.items()]
    parts.append(f"{images_per_s:.1f} img/s" if images_per_s else "? img/s")
    parts.append(f"ETA {duration(eta_s)}")
    return " | ".join(parts)


class PlainProgress(ProgressBar):
    """One line per ``every_n_steps`` optimizer steps and at the end of each epoch, plus one per evaluation.

    ``img/s`` is the global sample rate since the previous line; the ETA covers the remaining training steps
    at the mean step time of this run so far (evaluation time excluded). Lines go to stdout, flushed.
    """

    def __init__(self, every_n_steps: int = 10) -> None:
        super().__init__()
        if every_n_steps < 1:
            raise MDReIDError(f"callbacks.progress_bar.every_n_steps={every_n_steps}: must be at least 1")
        self.every_n_steps = every_n_steps
        self._enabled = True
        self._total_steps: float | None = None
        self._first_step = 0
        self._train_s = 0.0
        self._tick = 0.0
        self._window_s = 0.0
        self._window_samples = 0
        self._printed_step = -1
        self._eval_start = 0.0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def emit(self, line: str) -> None:
        if self._enabled:
            print(line, file=sys.stdout, flush=True)

    # ------------------------------------------------------------------------------------------ training
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._total_steps = float(trainer.estimated_stepping_batches)
        self._first_step = trainer.global_step
        self._train_s = 0.0
        self._printed_step = -1

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._tick = time.monotonic()
        self._window_s, self._window_samples = 0.0, 0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        now = time.monotonic()
        elapsed, self._tick = now - self._tick, now
        self._train_s += elapsed
        self._window_s += elapsed
        self._window_samples += batch_size(batch) * trainer.world_size
        step = trainer.global_step
        last_of_epoch = batch_idx + 1 >= self.total_train_batches
        if step == self._printed_step or not (step % self.every_n_steps == 0 or last_of_epoch):
            return
        done = step - self._first_step
        eta = (self._total_steps - step) * self._train_s / done if done and self._total_steps else None
        metrics = {
            k: float(v) for k, v in self.get_metrics(trainer, pl_module).items() if isinstance(v, int | float)
        }
        metrics.pop("v_num", None)
        self.emit(
            progress_line(
                epoch=trainer.current_epoch + 1,
                max_epochs=trainer.max_epochs,
                step=step,
                total_steps=self._total_steps,
                batch=batch_idx + 1,
                batches=self.total_train_batches,
                metrics=metrics,
                images_per_s=self._window_samples / self._window_s if self._window_s > 0 else None,
                eta_s=eta,
            )
        )
        self._printed_step = step
        self._window_s, self._window_samples = 0.0, 0

    # ---------------------------------------------------------------------------------------- evaluation
    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._eval_start = time.monotonic()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            # after fit, current_epoch counts the finished epochs: a trainer.validate() there is no epoch's own
            fitting = trainer.state.fn == TrainerFn.FITTING
            what = f"epoch {trainer.current_epoch + 1} validation" if fitting else "validation"
            self._eval_done(trainer, what, sum(trainer.num_val_batches), "val/score")
        self._tick = time.monotonic()  # a mid-epoch validation is not training time

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._eval_start = time.monotonic()

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._eval_done(trainer, "test", sum(trainer.num_test_batches), "test/score")

    def _eval_done(self, trainer: L.Trainer, what: str, batches: float, score: str) -> None:
        noun = "batch" if batches == 1 else "batches"
        line = f"{what} | {_count(batches)} {noun} in {duration(time.monotonic() - self._eval_start)}"
        if score in trainer.callback_metrics:
            line += f" | {score} {float(trainer.callback_metrics[score]):.4g}"
        self.emit(line)

    # ---------------------------------------------------------------------------------------- prediction
    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._eval_start = self._tick = time.monotonic()
        self._window_samples = 0

    def on_predict_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """``predict | batch 10/30 | 123.4 img/s | ETA 0:00:20`` every ``every_n_steps`` batches (this rank's)."""
        self._window_samples += batch_size(batch)
        batches = sum(trainer.num_predict_batches)
        if (batch_idx + 1) % self.every_n_steps and batch_idx + 1 < batches:
            return
        elapsed = time.monotonic() - self._eval_start
        rate = self._window_samples / elapsed if elapsed > 0 else None
        eta = elapsed / (batch_idx + 1) * (batches - batch_idx - 1)
        self.emit(
            f"predict | batch {batch_idx + 1}/{_count(batches)} | "
            + (f"{rate:.1f} items/s" if rate else "? items/s")
            + f" | ETA {duration(eta)}"
        )
