"""Hydra callback that leaves a summary table at the root of every multirun (``reporting.sweep_table``).

Each job records its state when it starts and ends (``job_status``), and the table is rewritten after every
job, so an interrupted sweep still has one up to its last finished job. At the end of the sweep it is
written once more and printed, followed by one line per job that failed (its error) or never ran, and the
sweep exits with code 1 if there is any. A failed job does not stop the sweep: the entry points end it with
a ``FailedJob`` value (``runtime.errors.cli_errors``) instead of an exception. A sweep that stops early
anyway (killed, or an exception outside the entry point) never reaches ``on_multirun_end``: the table is
then written and printed on the way out of the process, with the job that was running marked failed and the
jobs of the plan (``runtime.sweep_plan``) that never started listed as such.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from mdreid.config.run import RunConfig
from mdreid.process.errors import FailedJob
from mdreid.sweeps.job_status import mark_ended, mark_running
from mdreid.sweeps.sweep_plan import write_plan

if TYPE_CHECKING:
    from mdreid.reporting.sweep_table import SweepTable

log = logging.getLogger(__name__)


def _is_multirun(config: DictConfig) -> bool:
    return config.hydra.mode == RunMode.MULTIRUN


class SweepSummary(Callback):
    """Writes ``sweep_summary.csv`` / ``.md`` in ``hydra.sweep.dir``; jobs record ``job_status.json``."""

    def __init__(self) -> None:
        self._sweep_dir: Path | None = None
        self._reference: str | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._sweep_dir = Path(config.hydra.sweep.dir).absolute()
        # train.yaml's sweep_reference: the configuration the best one is compared with
        self._reference = RunConfig.parse(config).sweep_reference
        try:
            write_plan(config)
        except Exception as err:  # the plan only completes the table: never stop a sweep for it
            log.warning("sweep plan not written in %s: %s", self._sweep_dir, err)
        atexit.register(self._on_exit)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if _is_multirun(config):
            # any entry point's sweep: only train.yaml names the metric (RunConfig reads it in the job)
            mark_running(config.hydra.runtime.output_dir, RunConfig.parse(config).optimized_metric)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if not _is_multirun(config):
            return
        try:
            value, error = job_return.return_value, None
        except Exception as err:  # Hydra re-raises a failed job's exception here
            value, error = None, err
        if isinstance(value, FailedJob):
            value, error = None, value.error
        mark_ended(config.hydra.runtime.output_dir, error is None, value, error)
        self._write(Path(config.hydra.sweep.dir).absolute(), show=False, reference=self._reference)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        atexit.unregister(self._on_exit)
        table = self._write(Path(config.hydra.sweep.dir).absolute(), show=True, reference=self._reference)
        self._sweep_dir = None
        if table is not None:
            from mdreid.reporting.sweep_table import failure_lines

            failed = len(failure_lines(table))
            if failed:
                print(
                    f"error: {failed} of {len(table.jobs)} jobs failed or never ran (listed above)",
                    file=sys.stderr,
                )
                raise SystemExit(1)

    def _on_exit(self) -> None:
        """The sweep ended without ``on_multirun_end``: this process runs no job any more."""
        if self._sweep_dir is not None and self._sweep_dir.is_dir():
            self._write(self._sweep_dir, show=True, ended_pids=(os.getpid(),), reference=self._reference)

    @staticmethod
    def _write(
        sweep_dir: Path, show: bool, ended_pids: tuple[int, ...] = (), reference: str | None = None
    ) -> SweepTable | None:
        # imported here: Hydra builds its callbacks for every command, --help included
        from mdreid.reporting.sweep_report import print_table, write_summary

        try:
            table = write_summary(sweep_dir, ended_pids, reference)
        except Exception as err:  # a table must never turn a finished sweep into a failed one
            log.warning("sweep summary not written in %s: %s", sweep_dir, err)
            return None
        if show:
            print_table(table)
        return table
