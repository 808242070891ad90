"""The jobs a sweep will run, written at its start (``sweep_plan.json`` in the sweep folder), so that its table
can list a job that never ran (the sweep was killed, or a batch never started) next to those that did.

Only Hydra's basic sweeper has a plan known in advance (the product of the swept values); an optimiser
(Optuna) chooses its trials as it goes and writes none.
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from mdreid.files.atomic_io import atomic_write_json

PLAN_FILE = "sweep_plan.json"
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def planned_jobs(config: DictConfig) -> list[list[str]] | None:
    """Each job's overrides in job-number order, as the basic sweeper makes them; None for another sweeper."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    sweeper = config.hydra.sweeper
    if sweeper._target_ != BASIC_SWEEPER:  # every Hydra sweeper config names its class
        return None
    params = sweeper.params  # a field of the basic sweeper's config
    params = OmegaConf.to_container(params, resolve=False) if params is not None else {}
    arguments = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
    batches = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(arguments), None)
    return [list(job) for batch in batches for job in batch]


def write_plan(config: DictConfig) -> Path | None:
    """Record the sweep's jobs in its folder (nothing for a sweeper without a plan)."""
    jobs = planned_jobs(config)
    if jobs is None:
        return None
    folder = Path(config.hydra.sweep.dir)
    folder.mkdir(parents=True, exist_ok=True)
    return atomic_write_json(
        folder / PLAN_FILE, {"jobs": [{"num": i, "overrides": o} for i, o in enumerate(jobs)]}
    )


def read_plan(sweep_dir: str | Path) -> dict[int, list[str]]:
    """Job number -> overrides of the sweep's plan; empty without a readable plan."""
    try:
        record = json.loads((Path(sweep_dir) / PLAN_FILE).read_text())
        return {int(job["num"]): [str(o) for o in job["overrides"]] for job in record["jobs"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}
