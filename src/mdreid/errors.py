"""User-facing errors: one clear line naming the file or key and the fix, no traceback by default."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class MDReIDError(Exception):
    """An error caused by the user's input (data, config, checkpoint); its message says how to fix it."""


def _verbose() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1" or os.environ.get("MDREID_VERBOSE") == "1"


def cli_errors(fn: F) -> F:
    """Turn an ``MDReIDError`` escaping a CLI entry point into one ``error: ...`` line and exit code 2.

    Set ``MDREID_VERBOSE=1`` (or ``HYDRA_FULL_ERROR=1``) to see the traceback instead.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MDReIDError as err:
            if _verbose():
                raise
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper  # type: ignore[return-value]
