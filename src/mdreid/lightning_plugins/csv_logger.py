"""Lightning's CSV logger, able to continue a metrics file that another process started.

With spawned DDP workers (``trainer=ddp_spawn*``) every ``fit``/``test`` call runs in new processes, each with
a copy of the launching process's logger, which never saw the columns the previous call's workers wrote.
Lightning's writer then rewrites ``metrics.csv`` with the new call's columns only and fails on the old rows
(``ValueError: dict contains fields not in fieldnames``) at the end of a finished run. This writer reads the
file's header before its first save, so earlier columns and rows are kept.
"""

from __future__ import annotations

import csv

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


class _ContinuingWriter(ExperimentWriter):
    """Lightning's writer that starts from the columns already in ``metrics.csv``."""

    def _record_new_keys(self) -> set[str]:
        if not self.metrics_keys and self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = next(csv.reader(file), [])
        return super()._record_new_keys()


class CSVLogger(LightningCSVLogger):
    """``lightning.pytorch.loggers.CSVLogger`` whose metrics file survives several spawned trainer calls."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuingWriter(log_dir=self.log_dir)
        return self._experiment
