"""Each sweep job's state on disk: ``job_status.json`` in the job folder, written by the Hydra callback when the
job starts (``running``, with its process id and host) and when Hydra sees it end (``done`` or ``failed``, with
the optimized metric's value or the error), each time atomically.

A job whose process died without ending (killed, out of memory, a node lost) keeps ``running`` on disk; ``job_state`` tells it from a live one by its process: on
the same host, a process id that no longer exists (or that the caller knows has ended) means ``failed``. A job
on another host cannot be checked and stays ``running``.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mdreid.files.atomic_io import atomic_write_json

STATUS_FILE = "job_status.json"
DONE, RUNNING, FAILED, UNKNOWN = "done", "running", "failed", "unknown"


@dataclass(frozen=True)
class JobState:
    """``status``: done / running / failed, or unknown for a folder without a status file (a sweep started
    before mdreid wrote them) whose metrics.json is missing; ``value``: the optimized metric the job returned."""

    status: str
    value: float | None = None
    metric: str | None = None
    note: str = ""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def mark_running(job_dir: str | Path, metric: str | None) -> Path:
    """Record that this process runs the job in ``job_dir``."""
    record = {"status": RUNNING, "pid": os.getpid(), "host": socket.gethostname(), "started": _now()}
    return atomic_write_json(Path(job_dir) / STATUS_FILE, {**record, "optimized_metric": metric})


def mark_ended(
    job_dir: str | Path, ok: bool, value: Any = None, error: BaseException | str | None = None
) -> Path:
    """Record the job's end: ``done`` with the optimized metric's value (a number or None), or ``failed``
    with the error (its one line as given, or an exception's type and first line)."""
    path = Path(job_dir) / STATUS_FILE
    record = _read(path) or {}
    record.update(status=DONE if ok else FAILED, ended=_now())
    if ok:
        record["value"] = (
            float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        )
    elif isinstance(error, str):
        record["error"] = error
    else:
        lines = str(error).strip().splitlines()
        record["error"] = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return atomic_write_json(path, record)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def job_state(job_dir: str | Path, ended_pids: Collection[int] = ()) -> JobState:
    """The job's state from the evidence in its folder (see the module docstring); ``ended_pids``: processes
    the caller knows have finished their jobs (its own, when it rebuilds the table on its way out)."""
    job_dir = Path(job_dir)
    record = _read(job_dir / STATUS_FILE)
    if record is None:
        done = (job_dir / "metrics.json").is_file()
        return JobState(
            DONE if done else UNKNOWN, note="" if done else f"no {STATUS_FILE} and no metrics.json"
        )
    metric = record.get("optimized_metric")
    status = record.get("status")
    if status == DONE:
        return JobState(DONE, record.get("value"), metric)
    if status == FAILED:
        return JobState(FAILED, metric=metric, note=str(record.get("error", "")))
    pid, host = record.get("pid"), record.get("host")
    if host != socket.gethostname():
        return JobState(RUNNING, metric=metric, note=f"on {host}, not checked from here")
    if isinstance(pid, int) and pid not in ended_pids and _alive(pid):
        return JobState(RUNNING, metric=metric, note=f"process {pid}")
    return JobState(FAILED, metric=metric, note=f"process {pid} ended before the job finished")
