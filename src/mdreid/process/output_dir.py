"""The run's output folder must be writable before any work starts, not hours later at the first checkpoint.

``check_writable`` is called by the train and eval CLIs for ``paths.output_dir``; ``CheckOutputDir`` is a Hydra
callback (conf/hydra/default.yaml) that checks the run or sweep folder before Hydra itself creates it, which
would otherwise end in a traceback, locks it for this run, and removes a run folder the run left empty.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mdreid.process.errors import MDReIDError, cli_errors
from mdreid.process.run_lock import RunLock, is_primary_process

# matplotlib's cache folder inside a run (keep_caches_in)
CACHE_FOLDER = ".matplotlib"
# what matplotlib logs (INFO) each time it builds its font cache
FONT_CACHE_NOTE = "generated new fontManager"


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


def holds_nothing(folder: Path) -> bool:
    """True if ``folder`` holds only what Hydra and mdreid write before any work: Hydra's config copies
    (``.hydra``), matplotlib's cache and an empty log file."""
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if path.is_dir() or rel.parts[0] in (".hydra", CACHE_FOLDER):
            continue
        if len(rel.parts) == 1 and path.suffix == ".log" and path.stat().st_size == 0:
            continue
        return False
    return True


# what a finished (or resumable) run leaves in its folder; a new run there would replace it
RESULTS = ("metrics.json", "checkpoints/*.ckpt", "*.safetensors", "sweep_summary.csv")
# entry points whose ckpt_path resumes the run that wrote it (eval and export read it as the model instead)
RESUMING = ("train", "pretrain")


def refuse_finished_run(folder: Path, config: DictConfig, key: str) -> None:
    """A folder that holds a run's results (``RESULTS``) takes no new run: one line names ``ckpt_path=`` to
    resume it, another folder, or ``overwrite=true``. Resuming (``ckpt_path`` of train or pretrain) and an
    entry point without an ``overwrite`` key (export, which writes its file elsewhere) pass."""
    if "overwrite" not in config or config.overwrite is True:
        return
    resumes = str(config.hydra.job.config_name).removesuffix(".yaml") in RESUMING
    if "ckpt_path" in config and config.ckpt_path and resumes:
        return
    found = sorted(str(p.relative_to(folder)) for pattern in RESULTS for p in folder.glob(pattern))
    if not found:
        return
    last = folder / "checkpoints" / "last.ckpt"
    resume = f"resume it with ckpt_path={last}, " if last.is_file() and resumes else ""
    raise MDReIDError(
        f"{key}={folder} holds a finished run ({', '.join(found[:3])}{', ...' if len(found) > 3 else ''}); "
        f"{resume}choose another folder ({key}=...), or replace its results with overwrite=true"
    )


def _remove_if_unused(folder: Path) -> None:
    if folder.is_dir() and holds_nothing(folder):
        shutil.rmtree(folder, ignore_errors=True)


class CheckOutputDir(Callback):
    """Hydra callback, before Hydra creates the folder: an unwritable ``hydra.run.dir`` / ``hydra.sweep.dir``
    is one ``error:`` line, exit 2, and so is a folder that another live run is using (``RunLock``) or that
    holds a finished run (``refuse_finished_run``).

    A run folder this process creates and leaves with nothing in it (a config that fails its checks, an
    unreadable checkpoint) is removed when the process exits, so failed starts leave no empty run folders.
    """

    def __init__(self) -> None:
        self._lock: RunLock | None = None

    def _take(self, folder: str, key: str, config: DictConfig) -> None:
        path = check_writable(folder, key)
        if not path.exists():  # Hydra creates it next; a folder that was there is never removed
            atexit.register(_remove_if_unused, path)
        if is_primary_process():  # DDP ranks > 0 re-enter the same folder as their rank 0
            if path.is_dir():
                refuse_finished_run(path, config, key)
            self._lock = RunLock(path, key)
            self._lock.acquire()
            atexit.register(self._drop)  # runs first: an error line exits without on_run_end

    def _drop(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    @cli_errors
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._take(config.hydra.run.dir, "hydra.run.dir", config)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._drop()

    @cli_errors
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._take(config.hydra.sweep.dir, "hydra.sweep.dir", config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._drop()


class _DropFontCacheNote(logging.Filter):
    """Drops matplotlib's note that it built its font list, which a cache in the run folder does every run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != FONT_CACHE_NOTE


def keep_caches_in(folder: str | Path) -> None:
    """Point matplotlib's cache (its font list, written on first import; torchmetrics imports it) at
    ``<folder>/.matplotlib`` unless the user chose one, so a run writes nothing outside its folder.
    Call it before Lightning or torchmetrics is imported; once matplotlib is loaded it has no effect.

    A fresh cache is rebuilt on every run (a second or so), which matplotlib announces each time; that one
    note is dropped, and only when the cache is the run's own."""
    if "MPLCONFIGDIR" not in os.environ and "matplotlib" not in sys.modules:
        os.environ["MPLCONFIGDIR"] = str(Path(folder).expanduser().absolute() / CACHE_FOLDER)
        font_log = logging.getLogger("matplotlib.font_manager")
        if not any(isinstance(f, _DropFontCacheNote) for f in font_log.filters):
            font_log.addFilter(_DropFontCacheNote())
