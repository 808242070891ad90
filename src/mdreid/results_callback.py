"""Publishing the test result from inside the Trainer, so it works for every strategy (``ddp_spawn`` included,
where the objects of the launching process never see the result)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from mdreid.reports import publish


class PublishResults(Callback):
    """On global rank 0 after testing: tables, metrics.json / metrics.csv, plots and W&B media."""

    def __init__(self, out_dir: str | Path, header: Mapping[str, Any], plots: bool = True) -> None:
        self.out_dir = Path(out_dir)
        self.header = dict(header)
        self.plots = plots
        self.files: dict[str, Path] = {}

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.keep_samples = self.plots

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        result = getattr(pl_module, "last_result", None)
        if not trainer.is_global_zero or result is None:
            return
        datamodule = trainer.datamodule
        records = datamodule.eval_set.records if self.plots and datamodule is not None else None
        header = {**self.header, "epoch": trainer.current_epoch}
        self.files = publish(
            result,
            self.out_dir,
            header,
            loggers=trainer.loggers,
            samples=pl_module.last_samples if self.plots else None,
            records=records,
        )
