"""Log lines and warnings of spawned DDP workers, printed by the launching process, each once.

A spawned worker starts a fresh interpreter: none of the launching process's logging setup (Hydra's console
and run-log handlers, the filters of ``quiet_known_noise``) reaches it. Left alone, Lightning prints the
worker's lines through handlers of its own, every rank prints the same warning again, the run's log file
misses them all, and each ``fit``/``test`` call (a new set of workers) repeats the process-group banner.
Here every worker sends its records through a queue to the launching process, whose own handlers print them
(the standard multi-process logging recipe): rank 0 sends everything, other ranks their warnings and errors,
and a message already printed for an earlier rank or call of the same trainer is not printed again.
"""

from __future__ import annotations

import logging
import logging.handlers
import multiprocessing as mp
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mdreid.process.logs import quiet_known_noise


class _OncePerMessage(logging.handlers.QueueListener):
    """Hands each queued record to the handlers unless the same logger already printed the same message."""

    def __init__(self, queue: Any, handlers: list[logging.Handler], seen: set[tuple[str, int, str]]) -> None:
        super().__init__(queue, *handlers, respect_handler_level=True)
        self.seen = seen

    def handle(self, record: logging.LogRecord) -> None:
        key = (record.name, record.levelno, str(record.msg))
        if key not in self.seen:
            self.seen.add(key)
            super().handle(record)


class _RankFilter(logging.Filter):
    """In a worker of rank > 0, only warnings and errors: its info lines repeat rank 0's."""

    def __init__(self, rank: int) -> None:
        super().__init__()
        self.rank = rank

    def filter(self, record: logging.LogRecord) -> bool:
        return self.rank == 0 or record.levelno >= logging.WARNING


class WorkerLogs:
    """Created in the launching process; pickled into each worker with the launcher that holds it."""

    def __init__(self, start_method: str = "spawn") -> None:
        self.queue = mp.get_context(start_method).Queue()
        self.level = logging.INFO
        self._seen: set[tuple[str, int, str]] = set()

    def __getstate__(self) -> dict[str, Any]:
        return {"queue": self.queue, "level": self.level}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _seen=set())

    @contextmanager
    def forwarding(self) -> Iterator[None]:
        """Launching process, around one start of the workers: print what they send, until they are joined."""
        root = logging.getLogger()
        self.level = root.getEffectiveLevel()
        listener = _OncePerMessage(self.queue, list(root.handlers), self._seen)
        listener.start()
        try:
            yield
        finally:
            listener.stop()  # prints what is still queued

    def install(self, rank: int) -> None:
        """Worker process, before any work: send every record and warning to the launching process."""
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        handler = logging.handlers.QueueHandler(self.queue)
        handler.addFilter(_RankFilter(rank))
        root.addHandler(handler)
        root.setLevel(self.level)
        logging.captureWarnings(True)
        quiet_known_noise()
