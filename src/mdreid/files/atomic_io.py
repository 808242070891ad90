"""Atomic file writes: a crash never leaves a half-written result or checkpoint behind.

Everything is written to a temporary file in the destination folder, flushed to disk, then renamed over the
target (``os.replace`` is atomic on POSIX within one filesystem).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from mdreid.process.errors import MDReIDError

# how torch's checkpoint writer reports that the file system took fewer bytes than it was given
_TORCH_WRITE_FAILURES = ("PytorchStreamWriter failed", "unexpected pos", "file write failed")
# how a run's results are written elsewhere; a command whose output is named otherwise gives its own
RUN_ELSEWHERE = "point the run elsewhere (hydra.run.dir=... or paths.log_dir=...)"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any], elsewhere: str = RUN_ELSEWHERE) -> Path:
    """Call ``write(fileobj)`` on a temporary sibling of ``path`` and rename it into place. ``elsewhere``:
    how the user of this command writes the file to another folder, named when this one refuses it."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise MDReIDError(f"cannot write to {path.parent}: {err.strerror}; {elsewhere}") from err
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; results should get the usual permissions
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if _is_write_failure(err):
            raise MDReIDError(_write_failure(path, err, elsewhere)) from err
        raise
    return path


def _is_write_failure(err: BaseException) -> bool:
    """The storage refused the bytes: an OSError, or torch's zip writer reporting a short write."""
    if isinstance(err, OSError):
        return True
    return isinstance(err, RuntimeError) and any(m in str(err) for m in _TORCH_WRITE_FAILURES)


def _os_reason(err: BaseException) -> str:
    """The operating system's reason for a failed write (``No space left on device``): the OSError itself,
    or the one torch's zip writer turned into its RuntimeError (the exception it was handling)."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        seen = seen.__cause__ or seen.__context__
    return "the write did not complete"


def _write_failure(path: Path, err: BaseException, elsewhere: str) -> str:
    """``cannot write PATH (No space left on device; 1.2 MB free there); ... the previous file is intact``."""
    reason = _os_reason(err)
    try:
        free = f"{shutil.disk_usage(path.parent).free / 1e6:.1f} MB free there"
    except OSError:
        free = "free space unknown"
    kept = f"the previous {path.name} is intact" if path.exists() else f"no {path.name} was written"
    return (
        f"cannot write {path} ({reason}; {free}); {kept}. Free some space or fix the folder's permissions, "
        f"or {elsewhere}"
    )


def atomic_write_text(path: str | Path, text: str, elsewhere: str = RUN_ELSEWHERE) -> Path:
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")), elsewhere)


def atomic_write_json(path: str | Path, obj: Any, elsewhere: str = RUN_ELSEWHERE) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n", elsewhere)
