"""Ctrl-C and SIGTERM end a run the same way: one line naming the checkpoint to resume from, and the
shell's exit code for the signal (130 for SIGINT, 143 for SIGTERM), never a traceback or a silent 0.

Lightning turns SIGTERM into a stop at the next step boundary that exits 0, and KeyboardInterrupt into its own
shutdown with exit code 1; a scheduler or a sweep would take either for something it is not. Here SIGINT
raises :class:`Interrupted`, which Lightning passes through like any other error (checkpoints are written
atomically, so the last one stays whole), and SIGTERM keeps Lightning's step-boundary stop.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType


class Interrupted(BaseException):
    """Raised by the SIGINT handler; a BaseException, so ``except Exception`` blocks do not swallow it."""


def _is_sigterm(err: BaseException) -> bool:
    """Lightning's SIGTERMException, told without importing Lightning for an error raised before it loaded."""
    module = sys.modules.get("lightning.pytorch.utilities.exceptions")
    return module is not None and isinstance(err, module.SIGTERMException)


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the clean-up
    raise Interrupted()


def _stop(name: str, signum: int, resume: Callable[[], Path | None]) -> SystemExit:
    last = resume()
    hint = f"resume with ckpt_path={last}" if last is not None else "no checkpoint yet; start it again"
    print(f"error: stopped by {name} before the run finished; {hint}", file=sys.stderr)
    return SystemExit(128 + signum)


@contextmanager
def stop_cleanly(resume: Callable[[], Path | None]) -> Iterator[None]:
    """Run the body so that SIGINT and SIGTERM end it with the resume line; ``resume()`` names the
    checkpoint written so far (None if there is none yet)."""
    own = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, _raise_interrupted) if own else None
    try:
        yield
    except Interrupted:
        raise _stop("SIGINT (Ctrl-C)", signal.SIGINT, resume) from None
    except SystemExit as err:  # Lightning's SIGTERMException is a SystemExit
        if not _is_sigterm(err):
            raise
        raise _stop("SIGTERM", signal.SIGTERM, resume) from None
    finally:
        if own:
            signal.signal(signal.SIGINT, previous)


def last_checkpoint(folder: str | Path) -> Callable[[], Path | None]:
    """``resume`` for a run folder: its ``checkpoints/last.ckpt`` if that exists."""

    def find() -> Path | None:
        last = Path(folder) / "checkpoints" / "last.ckpt"
        return last if last.is_file() else None

    return find
