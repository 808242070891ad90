"""One run per folder: a second process started on a folder in use is refused before it writes anything.

Two runs with the same ``hydra.run.dir`` would otherwise both finish with exit code 0 while overwriting each
other's ``metrics.json``, checkpoints and ``.hydra/`` record. The lock is an advisory ``flock`` on
``<folder>/.mdreid.lock``, which the kernel releases when its process dies however it dies, so a killed
run's folder can be resumed at once; the file names its owner (pid, host, start time) for the error
message, and a file left by a dead owner is reported as a stale lock and taken over.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path

from mdreid.process.errors import MDReIDError

log = logging.getLogger(__name__)

LOCK_NAME = ".mdreid.lock"
# environment variables that name a process's rank in multi-process training; only rank 0 takes the lock
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")


def is_primary_process() -> bool:
    """Whether this process is rank 0 (or not part of a multi-process launch at all)."""
    return all(os.environ.get(name, "0") == "0" for name in _RANK_VARIABLES)


class RunLock:
    """An exclusive lock on a run folder, held from :meth:`acquire` until :meth:`release` or the process ends."""

    def __init__(self, folder: str | Path, key: str) -> None:
        self.folder = Path(folder).expanduser().absolute()
        self.key = key
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    def _open_locked(self) -> int | None:
        """A descriptor of the lock file holding the lock, or None if a live process holds it."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)  # the owner removed the file between our open and our lock: take the new one

    def _owner(self) -> str:
        try:
            info = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return "owner unknown"
        return f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}"

    def acquire(self) -> None:
        """Take the lock, or raise one ``MDReIDError`` line naming the live owner."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = self._open_locked()
        if fd is None:
            raise MDReIDError(
                f"{self.key}={self.folder} is in use by another run ({self._owner()}); wait for it to end, "
                f"or give this run its own folder ({self.key}=...)"
            )
        stale = os.fstat(fd).st_size > 0
        if stale:
            log.warning("%s: taking over the stale lock of a run that ended (%s)", self.folder, self._owner())
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Remove the lock file and let go; a no-op if not held."""
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None
