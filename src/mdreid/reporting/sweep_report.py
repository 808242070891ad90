"""The sweep summary as files and on the console: configurations first (mean ± std over seeds, ranked by
their mean, the best against the reference), then the jobs (``reporting.sweep_table`` builds both).

Files at the sweep folder's root, written atomically: ``sweep_summary.md`` (both tables and the protocol),
``sweep_summary.csv`` (one row per job) and ``sweep_configs.csv`` (one row per configuration).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from mdreid.files.atomic_io import atomic_write_text
from mdreid.reporting.seed_groups import configuration_label
from mdreid.reporting.sweep_table import (
    CONFIGS_NAME,
    CSV_NAME,
    MD_NAME,
    SweepTable,
    build_table,
    failure_lines,
    headline_columns,
    selection_line,
    short_name,
    to_csv,
    to_markdown,
    to_rich,
)


def _config_keys(table: SweepTable) -> list[str]:
    """The override keys that tell configurations apart (the seed never does)."""
    return [k for k in table.varying() if k.lstrip("+~") != "seed"]


def configs_csv(table: SweepTable) -> str:
    """rank, every configuration key, jobs, then mean, std and n of every column."""
    keys = list(dict.fromkeys(k for g in table.configs for k in g.overrides))
    columns = headline_columns(table)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["rank", *keys, "jobs", *(f"{c} {s}" for c in columns for s in ("mean", "std", "n"))])
    for rank, group in enumerate(table.configs, 1):
        cells: list[str] = []
        for column in columns:
            stat = group.stat(column)
            cells += (
                ["", "", "0"]
                if stat is None
                else [repr(stat.mean), "" if stat.std is None else repr(stat.std), str(stat.n)]
            )
        writer.writerow([rank, *(group.overrides.get(k, "") for k in keys), group.jobs, *cells])
    return buf.getvalue()


def comparison_lines(table: SweepTable) -> list[str]:
    """The best configuration against the reference, one line per compared column."""
    if table.reference_error:
        return [f"No comparison: {table.reference_error}"]
    if not table.differences or table.reference is None:
        return []
    shown = _config_keys(table)
    best, ref = (
        configuration_label(table.configs[0].overrides, shown),
        configuration_label(table.reference.overrides, shown),
    )
    lines = [f"Best ({best}) minus reference ({ref}), paired by seed:"]
    lines += [f"- {d.column}: {d.text()}" for d in table.differences]
    return lines


def protocol_lines(table: SweepTable) -> list[str]:
    """The protocol of the sweep's first job that records one (dataset, splits, junk rule)."""
    record = next((j.protocol for j in table.jobs if j.protocol), None)
    if record is None:
        return []
    splits = record.get("splits") or {}
    sizes = "; ".join(
        f"{name} " + ", ".join(f"{k} {v}" for k, v in (splits.get(name) or {}).items() if v is not None)
        for name in ("train", "val", "test")
        if splits.get(name)
    )
    return [f"Protocol: {record.get('dataset')}, {sizes}; junk rule {record.get('junk_rule')}."]


def configs_markdown(table: SweepTable) -> str:
    keys, columns = _config_keys(table), headline_columns(table)
    header = ["rank", *keys, "jobs", *columns]
    lines = ["## Configurations (mean ± std over seeds)", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for rank, group in enumerate(table.configs, 1):
        stats = [group.stat(c) for c in columns]
        cells = [str(rank), *(group.overrides.get(k, "") for k in keys), str(group.jobs)]
        lines.append("| " + " | ".join(cells + [s.text() if s else "" for s in stats]) + " |")
    return "\n".join([*lines, "", *comparison_lines(table)]) + "\n"


def summary_markdown(table: SweepTable) -> str:
    head = [
        f"# Sweep summary: {table.sweep_dir}",
        "",
        selection_line(table) + ".",
        *protocol_lines(table),
        "",
    ]
    return "\n".join(head) + "\n" + configs_markdown(table) + "\n" + to_markdown(table)


def configs_rich(table: SweepTable) -> Table:
    keys, columns = _config_keys(table), headline_columns(table)
    out = Table(title=f"Configurations, mean ± std over seeds. {selection_line(table)}")
    for name in ["rank", *keys, "jobs"]:
        out.add_column(name)
    for name in columns:
        out.add_column(short_name(name), justify="right")
    for rank, group in enumerate(table.configs, 1):
        stats = [group.stat(c) for c in columns]
        cells = [str(rank), *(group.overrides.get(k, "") for k in keys), str(group.jobs)]
        out.add_row(*cells, *(s.text() if s else "-" for s in stats))
    return out


def print_table(table: SweepTable, console: Console | None = None) -> None:
    """The console tables; off a terminal (a log file) at their full width instead of an 80-column squeeze."""
    console = console or Console()
    tables = [configs_rich(table), to_rich(table)]
    if not console.is_terminal:
        natural = max(
            Measurement.get(console, console.options.update_width(10_000), t).maximum for t in tables
        )
        console = Console(file=console.file, width=max(console.width, natural))
    for rich_table in tables:
        console.print(rich_table)
    for line in comparison_lines(table):
        console.print(line)
    for line in failure_lines(table):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    names = ", ".join(str(table.sweep_dir / n) for n in (MD_NAME, CSV_NAME, CONFIGS_NAME))
    console.print(f"sweep summary: {names}")


def write_summary(
    sweep_dir: str, ended_pids: Collection[int] = (), reference: str | None = None
) -> SweepTable:
    """Build the tables and write them at the sweep folder's root, atomically."""
    table = build_table(sweep_dir, ended_pids, reference)
    atomic_write_text(table.sweep_dir / CSV_NAME, to_csv(table))
    atomic_write_text(table.sweep_dir / CONFIGS_NAME, configs_csv(table))
    atomic_write_text(table.sweep_dir / MD_NAME, summary_markdown(table))
    return table
