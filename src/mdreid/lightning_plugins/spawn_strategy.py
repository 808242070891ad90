"""``ddp_spawn`` whose rank-0 metrics reach the launching process through a file instead of the result pipe.

Lightning's spawn launcher joins the worker processes before it reads their result queue, so a result larger
than the OS pipe buffer (64 KiB on Linux) blocks rank 0 in ``put`` while the parent waits in ``join``: a
silent deadlock after the work is done. The any-to-any metric logs ~270 scalars per evaluation (49 pairs x 5
metrics + groups), whose serialised ``callback_metrics`` are ~76 KiB, so every ``eval.pairs=all`` run hung.
Only the callback metrics move to a temporary file; the rest of the worker output stays a few KiB.

The workers' log lines and warnings are printed by the launching process, each once (``worker_logs``).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.apply_func import apply_to_collection
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.strategies.launchers.multiprocessing import _MultiProcessingLauncher

from mdreid.process.worker_logs import WorkerLogs


class FileMetricsLauncher(_MultiProcessingLauncher):
    """The spawn launcher with ``callback_metrics`` handed over in a temporary file (same node: rank 0's) and
    the workers' logs printed by the launching process."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.worker_logs = WorkerLogs(self._start_method)

    def launch(self, function: Any, *args: Any, trainer: L.Trainer | None = None, **kwargs: Any) -> Any:
        with self.worker_logs.forwarding():
            return super().launch(function, *args, trainer=trainer, **kwargs)

    def _wrapping_function(self, process_idx: int, *args: Any) -> None:
        self.worker_logs.install(process_idx)
        super()._wrapping_function(process_idx, *args)

    def get_extra_results(self, trainer: L.Trainer) -> dict[str, Any]:
        path = Path(tempfile.mkdtemp(prefix="mdreid-spawn-")) / "callback_metrics.pt"
        torch.save(apply_to_collection(trainer.callback_metrics, torch.Tensor, lambda t: t.cpu()), path)
        return {"callback_metrics_path": str(path)}

    def update_main_process_results(self, trainer: L.Trainer, extra: dict[str, Any]) -> None:
        path = Path(extra["callback_metrics_path"])
        trainer.callback_metrics.update(torch.load(path, weights_only=True))
        shutil.rmtree(path.parent, ignore_errors=True)


class SpawnDDPStrategy(DDPStrategy):
    """``strategy=ddp_spawn`` (one spawned process per device) with any number of logged metrics."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(start_method="spawn", **kwargs)

    def _configure_launcher(self) -> None:
        self._launcher = FileMetricsLauncher(self, start_method=self._start_method)
