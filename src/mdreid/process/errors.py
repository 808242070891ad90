"""User-facing errors: one clear line naming the file or key and the fix, no traceback by default."""

from __future__ import annotations

import functools
import logging
import math
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_WORKER_MARK = "\nOriginal Traceback"  # how torch's DataLoader re-raises an error from a worker process

log = logging.getLogger(__name__)


class MDReIDError(Exception):
    """An error caused by the user's input (data, config, checkpoint); its message says how to fix it."""


def _verbose() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1" or os.environ.get("MDREID_VERBOSE") == "1"


def user_error(err: BaseException) -> MDReIDError | None:
    """The MDReIDError behind ``err``: itself, or the cause of a wrapper such as Hydra's
    ``InstantiationException`` (raised when a constructor that ``instantiate`` calls fails)."""
    seen: BaseException | None = err
    while seen is not None and not isinstance(seen, MDReIDError):
        seen = seen.__cause__
    return seen


def one_line(err: MDReIDError) -> str:
    """The error's own message. A DataLoader worker's error arrives with the worker's traceback prepended,
    so only its last line, the original message, is kept."""
    text = str(err)
    if _WORKER_MARK in text:
        last = text.rstrip().splitlines()[-1]
        text = last.split(f"{type(err).__name__}: ", 1)[-1]
    return text


class FailedJob(float):
    """What a failed job of a Hydra multirun returns instead of raising: NaN to a sweeper that optimises (a
    failed trial), and its one error line (``error``) to the sweep's job status and table. An exception would
    make Hydra's sweepers stop the sweep, and ``SystemExit`` would end the process before the next job."""

    error: str

    def __new__(cls, error: str) -> FailedJob:
        job = super().__new__(cls, math.nan)
        job.error = error
        return job

    def __reduce__(self) -> tuple[type, tuple[str]]:  # a launcher in another process sends it back pickled
        return (FailedJob, (self.error,))

    def __repr__(self) -> str:
        return f"FailedJob({self.error!r})"


def _in_sweep_job() -> bool:
    """Whether this code runs as a job of a Hydra multirun."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
    except ImportError:
        return False
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def cli_errors(fn: F) -> F:
    """Turn an ``MDReIDError`` escaping a CLI entry point (also one wrapped by Hydra or re-raised from a
    DataLoader worker) into one ``error: ...`` line and exit code 2; any other exception propagates.

    In a job of a multirun the job ends instead, returning ``FailedJob`` (any exception: a bug's traceback
    goes to the job's log), so the sweep runs its other jobs. Set ``MDREID_VERBOSE=1`` (or
    ``HYDRA_FULL_ERROR=1``) to see the traceback instead.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            found = user_error(err)
            sweep_job = _in_sweep_job()
            if _verbose() or (found is None and not sweep_job):
                raise
            if found is None:
                log.exception("the job failed")
                first = (str(err).strip().splitlines() or [""])[0]
                line = f"{type(err).__name__}: {first}" if first else type(err).__name__
            else:
                line = one_line(found)
            print(f"error: {line}", file=sys.stderr)
            if sweep_job:
                return FailedJob(line)
            raise SystemExit(2) from None

    return wrapper  # type: ignore[return-value]
