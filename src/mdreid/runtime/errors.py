"""User-facing errors: one clear line naming the file or key and the fix, no traceback by default."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_WORKER_MARK = "\nOriginal Traceback"  # how torch's DataLoader re-raises an error from a worker process


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


def cli_errors(fn: F) -> F:
    """Turn an ``MDReIDError`` escaping a CLI entry point (also one wrapped by Hydra or re-raised from a
    DataLoader worker) into one ``error: ...`` line and exit code 2; any other exception propagates.

    Set ``MDREID_VERBOSE=1`` (or ``HYDRA_FULL_ERROR=1``) to see the traceback instead.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            found = user_error(err)
            if found is None or _verbose():
                raise
            print(f"error: {one_line(found)}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper  # type: ignore[return-value]
