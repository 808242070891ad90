"""``last.ckpt`` at the end of every training epoch, whether or not the epoch validated.

Lightning's ``ModelCheckpoint`` writes when validation ends; with validation every 10 epochs (the recipes'
cadence) a run killed at epoch 9 would lose everything. This callback writes the resume point on its own
cadence; ``ModelCheckpoint`` keeps the per-validation files and the best-epoch selection. Writes go through the
trainer's checkpoint IO, which is atomic (``mdreid.lightning_plugins.atomic_checkpoint_io``).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback

from mdreid.process.errors import MDReIDError

FILENAME = "last.ckpt"


class LastCheckpoint(Callback):
    """Write ``<dirpath>/last.ckpt`` every ``every_n_epochs`` epochs and, for long epochs, every
    ``every_n_train_steps`` optimizer steps (a resume from mid-epoch restarts that epoch's data order)."""

    def __init__(
        self, dirpath: str | Path, every_n_epochs: int = 1, every_n_train_steps: int | None = None
    ) -> None:
        for key, value in (("every_n_epochs", every_n_epochs), ("every_n_train_steps", every_n_train_steps)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise MDReIDError(
                    f"callbacks.last_checkpoint.{key}={value!r}: use an integer >= 1 (or null for steps)"
                )
        self.path = Path(dirpath) / FILENAME
        self.every_n_epochs = every_n_epochs
        self.every_n_train_steps = every_n_train_steps
        self._saved_step = -1

    def _save(self, trainer: L.Trainer) -> None:
        if trainer.global_step == self._saved_step:
            return
        # every rank calls it; the strategy decides who writes. A resume point holds the full training state
        # (optimizer, loops, callbacks), said explicitly: left unset, Lightning logs its default on every save
        trainer.save_checkpoint(self.path, weights_only=False)
        self._saved_step = trainer.global_step

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        n = self.every_n_train_steps
        if n and trainer.global_step % n == 0:
            self._save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        last_epoch = trainer.current_epoch + 1 >= (trainer.max_epochs or 0)
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0 or last_epoch:
            self._saved_step = -1  # the epoch-end state (loops, callbacks) differs from a step save's
            self._save(trainer)
