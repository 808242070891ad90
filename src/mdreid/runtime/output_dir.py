"""The run's output folder must be writable before any work starts, not hours later at the first checkpoint.

``check_writable`` is called by the train and eval CLIs for ``paths.output_dir``; ``CheckOutputDir`` is a Hydra
callback (conf/hydra/default.yaml) that checks the run or sweep folder before Hydra itself creates it, which
would otherwise end in a traceback, and locks it for this run.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mdreid.runtime.errors import MDReIDError, cli_errors
from mdreid.runtime.run_lock import RunLock, is_primary_process


def check_writable(folder: str | Path, key: str) -> Path:
    """``folder`` (the value of config ``key``) as an absolute path, if it exists or can be created and written.

    Nothing is created: a temporary file probes the nearest existing folder, which also catches read-only
    mounts and quota-less network folders that ``os.access`` reports as writable.
    """
    path = Path(folder).expanduser().absolute()
    base = path
    try:
        while not base.exists():
            base = base.parent
        if not base.is_dir():
            raise NotADirectoryError("not a folder")
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as err:
        reason = err.strerror or str(err)
        raise MDReIDError(
            f"{key}={path} cannot be written ({base}: {reason}); set {key} (or paths.log_dir / MDREID_ROOT) "
            "to a writable folder"
        ) from err
    return path


class CheckOutputDir(Callback):
    """Hydra callback, before Hydra creates the folder: an unwritable ``hydra.run.dir`` / ``hydra.sweep.dir``
    is one ``error:`` line, exit 2, and so is a folder that another live run is using (``RunLock``)."""

    def __init__(self) -> None:
        self._lock: RunLock | None = None

    def _take(self, folder: str, key: str) -> None:
        check_writable(folder, key)
        if is_primary_process():  # DDP ranks > 0 re-enter the same folder as their rank 0
            self._lock = RunLock(folder, key)
            self._lock.acquire()

    def _drop(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    @cli_errors
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._take(config.hydra.run.dir, "hydra.run.dir")

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._drop()

    @cli_errors
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._take(config.hydra.sweep.dir, "hydra.sweep.dir")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._drop()


def keep_caches_in(folder: str | Path) -> None:
    """Point matplotlib's cache (its font list, written on first import; torchmetrics imports it) at
    ``<folder>/.matplotlib`` unless the user chose one, so a run writes nothing outside its folder.
    Call it before Lightning or torchmetrics is imported; once matplotlib is loaded it has no effect."""
    if "MPLCONFIGDIR" not in os.environ and "matplotlib" not in sys.modules:
        os.environ["MPLCONFIGDIR"] = str(Path(folder).expanduser().absolute() / ".matplotlib")
