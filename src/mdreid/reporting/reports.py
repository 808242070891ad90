"""Where an evaluation result goes: rich tables on the console, metrics.json / metrics.csv, the plots, and W&B.

This is the sink of the data flow (files -> DataModule -> LightningModule -> Metric -> reports); the train and
eval CLIs both publish through ``publish``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger, WandbLogger
from rich.console import Console
from rich.table import Table

from mdreid.data.records import Record
from mdreid.files.atomic_io import atomic_write_json, atomic_write_text
from mdreid.metrics.groups import pair_name
from mdreid.metrics.results import ROW_FIELDS, AnyToAnyResult
from mdreid.modalities import SUBSETS
from mdreid.reporting.plots.report import write_plots

log = logging.getLogger(__name__)


def pair_table(result: AnyToAnyResult, metric: str) -> Table:
    """Query subsets as rows, gallery subsets as columns; pairs that were not evaluated show ``-``."""
    values = {(r["query"], r["gallery"]): r[metric] for r in result.rows}
    queries = [q for q in SUBSETS if any(k[0] == q for k in values)]
    galleries = [g for g in SUBSETS if any(k[1] == g for k in values)]
    table = Table(title=f"{metric} (%): query (rows) -> gallery (columns), similarity={result.similarity}")
    table.add_column("Q \\ G", style="bold")
    for g in galleries:
        table.add_column(g, justify="right")
    for q in queries:
        table.add_row(q, *[f"{values[(q, g)]:.1f}" if (q, g) in values else "-" for g in galleries])
    return table


def groups_table(result: AnyToAnyResult) -> Table:
    table = Table(title="Paper settings (mAP / R1, %)")
    table.add_column("group")
    table.add_column("mAP", justify="right")
    table.add_column("R1", justify="right")
    for name in sorted({k.rsplit("/", 1)[0] for k in result.groups}):
        m_ap, r1 = result.groups.get(f"{name}/mAP"), result.groups.get(f"{name}/R1")
        table.add_row(name, "-" if m_ap is None else f"{m_ap:.1f}", "-" if r1 is None else f"{r1:.1f}")
    return table


def print_result(result: AnyToAnyResult, console: Console | None = None) -> None:
    console = console or Console()
    console.print(pair_table(result, "mAP"))
    console.print(pair_table(result, "R1"))
    if result.groups:
        console.print(groups_table(result))
    console.print(f"score = (mAP + R1) / 2 {result.score_basis}: {result.score:.2f}")


def write_metrics(out_dir: Path, result: AnyToAnyResult, header: Mapping[str, Any]) -> list[Path]:
    """metrics.json (settings, 49 rows, groups, CMC) and metrics.csv (one line per pair), atomically."""
    return [
        atomic_write_json(out_dir / "metrics.json", {**header, **result.to_dict()}),
        atomic_write_text(out_dir / "metrics.csv", result.to_csv()),
    ]


def log_media(
    loggers: Sequence[Logger], result: AnyToAnyResult, plots: Mapping[str, Path], prefix: str
) -> None:
    """The 49-row table, the plots and the CMC curves as W&B media (other loggers get the scalars only)."""
    for logger in loggers:
        if not isinstance(logger, WandbLogger):
            continue
        import wandb

        logger.log_table(
            f"{prefix}/pairs",
            columns=list(ROW_FIELDS),
            data=[[r[c] for c in ROW_FIELDS] for r in result.rows],
        )
        for name, path in plots.items():
            logger.log_image(f"{prefix}/{name}", images=[str(path)])
        names = list(result.cmc)
        ranks = list(range(1, len(result.cmc[names[0]]) + 1)) if names else []
        logger.experiment.log(
            {
                f"{prefix}/cmc": wandb.plot.line_series(
                    xs=ranks,
                    ys=[result.cmc[n].tolist() for n in names],
                    keys=names,
                    title="CMC",
                    xname="rank",
                )
            }
        )


def warn_unscored(result: AnyToAnyResult) -> None:
    """Say how many queries a pair could not score (no same-identity gallery item outside the junk), which the
    official protocol drops silently; the counts are in metrics.json/csv (num_valid of num_query)."""
    short = [r for r in result.rows if r["num_valid"] < r["num_query"]]
    if short:
        worst = max(short, key=lambda r: r["num_query"] - r["num_valid"])
        log.warning(
            "%d of %d pairs have queries without a valid gallery match, not scored (official protocol); "
            "most in %s: %d of %d queries (num_valid / num_query in metrics.csv)",
            len(short),
            len(result.rows),
            pair_name(worst["query"], worst["gallery"]),
            worst["num_query"] - worst["num_valid"],
            worst["num_query"],
        )


def publish(
    result: AnyToAnyResult,
    out_dir: Path,
    header: Mapping[str, Any],
    loggers: Sequence[Logger] = (),
    samples: Mapping[str, Any] | None = None,
    records: Sequence[Record] | None = None,
    prefix: str = "test",
    console: Console | None = None,
    explain: Callable | None = None,
) -> dict[str, Path]:
    """Print, write and log one evaluation; returns the written files by name. Plots need the ``samples``;
    the ranked lists among them also need the ``records`` (the images), and draw Grad-CAM overlays with
    ``explain`` (an ``Explainer.match``)."""
    print_result(result, console)
    warn_unscored(result)
    files = dict(zip(("metrics.json", "metrics.csv"), write_metrics(out_dir, result, header), strict=True))
    plots: dict[str, Path] = {}
    if samples is not None:
        plots = write_plots(
            result,
            samples,
            records,
            out_dir / "plots",
            similarity=result.similarity,
            junk=result.junk,
            explain=explain,
        )
    log_media(loggers, result, plots, prefix)
    for name, path in {**files, **plots}.items():
        log.info("%s: %s", name, path)
    return {**files, **plots}
