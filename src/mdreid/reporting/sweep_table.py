"""The table that ends a sweep: every job's overrides, status and named-setting metrics, best first.

Built from the sweep folder alone, so the Hydra callback (after each job and at the end) and
``python -m mdreid.sweep_summary DIR`` (an interrupted sweep) give the same table. A job folder is a child
of the sweep folder whose ``.hydra/hydra.yaml`` says ``mode: MULTIRUN``; its status comes from
``runtime.job_status`` and its metrics from its ``metrics.json`` (``groups``: the named settings of
``metrics.groups``).

Ranking: by the optimized metric (``optimized_metric``, e.g. ``val/score`` on the validation split: the
value each job returned to the sweeper, higher first unless ``hydra.sweeper.direction`` is ``minimize``).
Without one the jobs keep their order: the test columns are reported, never ranked on. Jobs without a value
come after the others, done before running before failed; ties keep the job order.

Jobs that differ only in their seed form one configuration (``reporting.seed_groups``): the table leads with
the configurations ranked by their mean, each column as mean ± std (n), and the best configuration against a
reference (``sweep_reference``, by default the runner-up) as a paired-seed difference with its 95% interval.
Each job's protocol record (metrics.json) says which split selected; a sweep on the test split
(``data.val=test``) says so in its first line.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.table import Table

from mdreid.metrics.groups import MATCHED, pair_name
from mdreid.process.errors import MDReIDError
from mdreid.reporting.seed_groups import (
    ConfigGroup,
    PairedDifference,
    find_reference,
    group_jobs,
    paired_difference,
    parse_reference,
    rank_groups,
)
from mdreid.sweeps.job_status import DONE, FAILED, RUNNING, UNKNOWN, job_state
from mdreid.sweeps.sweep_plan import read_plan

CSV_NAME, MD_NAME, CONFIGS_NAME = "sweep_summary.csv", "sweep_summary.md", "sweep_configs.csv"
TEST_HEADLINE = f"matched/{pair_name(*MATCHED[0])}/mAP"
# the named settings shown in the Markdown and console tables (the CSV has every group of metrics.json)
HEADLINE: tuple[str, ...] = tuple(
    f"{group}/{metric}"
    for group in (f"matched/{pair_name(*MATCHED[0])}", "missing/avg", "mismatched/avg4", "mismatched/avg42")
    for metric in ("mAP", "R1")
)
NEVER_RAN = "never ran"  # a job of the sweep's plan without a folder
_STATUS_ORDER = {DONE: 0, RUNNING: 1, FAILED: 2, UNKNOWN: 3, NEVER_RAN: 4}


@dataclass
class JobRow:
    """One job of the sweep: its number, folder, overrides, status and numbers."""

    num: int
    folder: Path
    overrides: dict[str, str]
    status: str
    value: float | None  # the optimized metric it returned, if any
    metric: str | None  # the optimized metric's name
    groups: dict[str, float] = field(default_factory=dict)
    note: str = ""
    direction: str = "maximize"
    protocol: dict[str, Any] | None = None  # metrics.json's protocol record

    @property
    def seed(self) -> str:
        """What tells this job apart from the other repetitions of its configuration."""
        if "seed" in self.overrides:
            return self.overrides["seed"]
        return str((self.protocol or {}).get("seed", f"job{self.num}"))


@dataclass
class SweepTable:
    """The ranked jobs and the column they are ranked by (None: job order), the configurations ranked by
    their mean, and the best configuration against the reference."""

    sweep_dir: Path
    jobs: list[JobRow]
    rank_by: str | None
    descending: bool
    configs: list[ConfigGroup] = field(default_factory=list)
    reference: ConfigGroup | None = None
    differences: list[PairedDifference] = field(default_factory=list)
    reference_error: str | None = None  # a sweep_reference that names no single configuration

    def selected_on(self) -> list[str]:
        """The splits the jobs selected on, from their protocol records (``test`` = data.val=test)."""
        return sorted({str(j.protocol.get("selected_on")) for j in self.jobs if j.protocol})

    def varying(self) -> list[str]:
        """Override keys whose value is not the same in every job (all keys for a single job)."""
        keys = list(dict.fromkeys(k for job in self.jobs for k in job.overrides))
        if len(self.jobs) < 2:
            return keys
        return [k for k in keys if len({job.overrides.get(k) for job in self.jobs}) > 1]

    def constant(self) -> dict[str, str]:
        varying = set(self.varying())
        return {k: v for k, v in self.jobs[0].overrides.items() if k not in varying} if self.jobs else {}

    def group_keys(self) -> list[str]:
        return list(dict.fromkeys(k for job in self.jobs for k in job.groups))

    def value_of(self, job: JobRow) -> float | None:
        if self.rank_by is None:
            return None
        return (
            job.value
            if self.rank_by == job.metric and job.metric is not None
            else job.groups.get(self.rank_by)
        )


def _yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def _multirun_job(folder: Path) -> dict[str, Any] | None:
    """The ``hydra`` node of ``folder``'s saved config if it is a job of a multirun, else None."""
    if not (folder / ".hydra" / "overrides.yaml").is_file():
        return None
    saved = _yaml(folder / ".hydra" / "hydra.yaml")
    hydra = saved.get("hydra") if isinstance(saved, dict) else None
    return hydra if isinstance(hydra, dict) and hydra.get("mode") == "MULTIRUN" else None


def _read_job(folder: Path, hydra: dict[str, Any], ended_pids: Collection[int]) -> JobRow:
    overrides = {}
    for item in _yaml(folder / ".hydra" / "overrides.yaml") or []:
        key, _, value = str(item).partition("=")
        overrides[key] = value
    num = (hydra.get("job") or {}).get("num")
    num = num if isinstance(num, int) else -1
    direction = (hydra.get("sweeper") or {}).get("direction", "maximize")
    state = job_state(folder, ended_pids)
    metric = state.metric or (_yaml(folder / ".hydra" / "config.yaml") or {}).get("optimized_metric")
    groups: dict[str, float] = {}
    note = state.note
    protocol = None
    if (folder / "metrics.json").is_file():
        try:
            payload = json.loads((folder / "metrics.json").read_text())
            groups = {k: float(v) for k, v in payload["groups"].items()}
            protocol = payload.get("protocol") if isinstance(payload.get("protocol"), dict) else None
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            note = "; ".join(filter(None, (note, "metrics.json unreadable")))
    if not isinstance(metric, str) or "${" in metric:  # an unresolved default in the saved config
        metric = None
    return JobRow(
        num, folder, overrides, state.status, state.value, metric, groups, note, str(direction), protocol
    )


def _configurations(table: SweepTable, reference: str | None) -> None:
    """Group the finished jobs by configuration, rank them by their mean, compare best and reference."""
    columns = [c for c in (table.rank_by, *HEADLINE) if c is not None]
    done = [
        (job.overrides, job.seed, {c: _metric(table, job, c) for c in columns})
        for job in table.jobs
        if job.status == DONE
    ]
    table.configs = group_jobs(done)
    if table.rank_by is not None:
        table.configs = rank_groups(table.configs, table.rank_by, table.descending)
    if reference is not None:
        try:
            table.reference = find_reference(table.configs, parse_reference(reference))
        except MDReIDError as err:  # the tables are still written; the comparison says why it is absent
            table.reference_error = str(err)
    elif len(table.configs) > 1 and table.rank_by is not None:
        table.reference = table.configs[1]  # the runner-up: is the winner told apart from it?
    best = table.configs[0] if table.configs else None
    if best is not None and table.reference is not None and table.reference is not best:
        compared = (c for c in (table.rank_by, TEST_HEADLINE) if c is not None)
        table.differences = [d for d in (paired_difference(best, table.reference, c) for c in compared) if d]


def build_table(
    sweep_dir: str | Path, ended_pids: Collection[int] = (), reference: str | None = None
) -> SweepTable:
    """Read every job of the sweep and rank them and their configurations (see the module docstring);
    ``reference`` (``k=v,k=v``) names the configuration the best one is compared with."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise MDReIDError(f"{sweep_dir}: no such sweep folder")
    found = ((folder, _multirun_job(folder)) for folder in sorted(sweep_dir.iterdir()) if folder.is_dir())
    jobs = [_read_job(folder, hydra, ended_pids) for folder, hydra in found if hydra is not None]
    jobs += never_ran(sweep_dir, jobs)
    jobs.sort(key=lambda j: (j.num, j.folder.name))
    if not jobs:
        raise MDReIDError(
            f"{sweep_dir}: no multirun job folders (children whose .hydra/hydra.yaml says mode: MULTIRUN); "
            "pass the sweep folder (hydra.sweep.dir) of a multirun"
        )
    objective = next((j for j in jobs if j.value is not None and j.metric), None)
    if objective is not None:
        rank_by, descending = str(objective.metric), objective.direction != "minimize"
    else:
        rank_by, descending = None, True
    table = SweepTable(sweep_dir, jobs, rank_by, descending)

    def key(job: JobRow) -> tuple:
        value = table.value_of(job)
        if value is None or math.isnan(value):
            return (1, _STATUS_ORDER.get(job.status, 9) if rank_by else 0, 0.0, job.num)
        return (0, 0, -value if descending else value, job.num)

    table.jobs.sort(key=key)
    _configurations(table, reference)
    return table


def never_ran(sweep_dir: Path, jobs: Sequence[JobRow]) -> list[JobRow]:
    """Rows for the jobs of the sweep's plan (``runtime.sweep_plan``) that have no folder."""
    seen = {job.num for job in jobs}
    return [
        JobRow(
            num, sweep_dir / str(num), dict(o.partition("=")[::2] for o in overrides), NEVER_RAN, None, None
        )
        for num, overrides in sorted(read_plan(sweep_dir).items())
        if num not in seen
    ]


def failure_lines(table: SweepTable) -> list[str]:
    """One line per job that failed (with its error) or never ran, in job order, naming the overrides that
    vary between jobs; empty if none."""
    varying = table.varying()
    lines = []
    for job in sorted(table.jobs, key=lambda j: j.num):
        if job.status in (FAILED, NEVER_RAN):
            overrides = " ".join(f"{k}={job.overrides.get(k, '')}" for k in varying)
            lines.append(f"job {job.num} ({overrides}) {job.status}" + (f": {job.note}" if job.note else ""))
    return lines


def _fmt(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _metric_columns(table: SweepTable, groups: Sequence[str]) -> list[str]:
    ranked = [table.rank_by] if table.rank_by is not None and table.rank_by not in groups else []
    return [*ranked, *groups]


def _metric(table: SweepTable, job: JobRow, column: str) -> float | None:
    return table.value_of(job) if column == table.rank_by else job.groups.get(column)


def to_csv(table: SweepTable) -> str:
    """rank, job, status, every override key, the ranking column, every named setting, folder, note."""
    keys = list(dict.fromkeys(k for job in table.jobs for k in job.overrides))
    metrics = _metric_columns(table, table.group_keys())
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["rank", "job", "status", *keys, *metrics, "folder", "note"])
    for rank, job in enumerate(table.jobs, 1):
        values = [_metric(table, job, c) for c in metrics]
        writer.writerow(
            [rank, job.num, job.status, *(job.overrides.get(k, "") for k in keys)]
            + ["" if v is None else repr(v) for v in values]
            + [job.folder.name, job.note]
        )
    return buf.getvalue()


def headline_columns(table: SweepTable) -> list[str]:
    present = set(table.group_keys())
    return _metric_columns(table, [k for k in HEADLINE if k in present])


def _ranking_line(table: SweepTable) -> str:
    order = "higher" if table.descending else "lower"
    counts = {s: sum(j.status == s for j in table.jobs) for s in _STATUS_ORDER}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    if table.rank_by is None:
        return f"{len(table.jobs)} jobs ({summary}), in job order (no selection metric; test columns are not ranked on)"
    return f"{len(table.jobs)} jobs ({summary}), best first by {table.rank_by} ({order} is better)"


def selection_line(table: SweepTable) -> str:
    """Which split selected: the validation split, or the TEST split when a job ran with data.val=test."""
    splits = table.selected_on()
    if "test" in splits:
        return "SELECTED ON THE TEST SPLIT (data.val=test): val/* columns are test-derived; this is no honest result"
    if splits == ["validation"]:
        return "Selected on the validation split (held-out training identities); test columns are reported, not ranked on"
    return f"Selection split: {', '.join(splits) or 'unknown (no protocol record)'}"


def to_markdown(table: SweepTable) -> str:
    """The headline columns as a Markdown table, with the overrides common to every job above it."""
    varying, metrics = table.varying(), headline_columns(table)
    lines = ["## Jobs", "", _ranking_line(table) + "."]
    constant = table.constant()
    if constant:
        lines.append("Same in every job: " + ", ".join(f"`{k}={v}`" for k, v in constant.items()) + ".")
    header = ["rank", "job", "status", *varying, *metrics, "note"]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for rank, job in enumerate(table.jobs, 1):
        cells = [str(rank), str(job.num), job.status, *(job.overrides.get(k, "") for k in varying)]
        cells += [_fmt(_metric(table, job, c), 2) for c in metrics] + [job.note.replace("|", "\\|")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def short_name(column: str) -> str:
    """``matched/RNT->RNT/mAP`` -> ``RNT->RNT mAP``, ``missing/avg/R1`` -> ``missing avg R1``: narrow headers."""
    return column.removeprefix("matched/").replace("/", " ")


def to_rich(table: SweepTable) -> Table:
    varying, metrics = table.varying(), headline_columns(table)
    out = Table(title=f"Sweep summary: {_ranking_line(table)}")
    for name in ["rank", "job", "status", *varying]:
        out.add_column(name)
    for name in metrics:
        out.add_column(short_name(name), justify="right")
    for rank, job in enumerate(table.jobs, 1):
        cells = [str(rank), str(job.num), job.status, *(job.overrides.get(k, "") for k in varying)]
        out.add_row(*cells, *(_fmt(_metric(table, job, c), 2) or "-" for c in metrics))
    return out
