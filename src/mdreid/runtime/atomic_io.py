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

from mdreid.runtime.errors import MDReIDError

# how torch's checkpoint writer reports that the file system took fewer bytes than it was given
_TORCH_WRITE_FAILURES = ("PytorchStreamWriter failed", "unexpected pos", "file write failed")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(fileobj)`` on a temporary sibling of ``path`` and rename it into place."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise MDReIDError(
            f"cannot write to {path.parent}: {err.strerror}; choose a writable output folder "
            "(e.g. hydra.run.dir=... or paths.log_dir=...)"
        ) from err
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
            raise MDReIDError(_write_failure(path, err)) from err
        raise
    return path


def _is_write_failure(err: BaseException) -> bool:
    """The storage refused the bytes: an OSError, or torch's zip writer reporting a short write."""
    if isinstance(err, OSError):
        return True
    return isinstance(err, RuntimeError) and any(m in str(err) for m in _TORCH_WRITE_FAILURES)


def _write_failure(path: Path, err: BaseException) -> str:
    """``cannot write PATH (No space left on device; 1.2 MB free there); ... the previous file is intact``."""
    reason = err.strerror if isinstance(err, OSError) and err.strerror else "the write did not complete"
    try:
        free = f"{shutil.disk_usage(path.parent).free / 1e6:.1f} MB free there"
    except OSError:
        free = "free space unknown"
    kept = f"the previous {path.name} is intact" if path.exists() else f"no {path.name} was written"
    return (
        f"cannot write {path} ({reason}; {free}); {kept}. Free some space or fix the folder's permissions, "
        "or point the run elsewhere (hydra.run.dir=... or paths.log_dir=...)"
    )


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
