"""Console reports of an any-to-any result: the 7x7 mAP and R1 tables and the paper's named groups."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from mdreid.metrics.results import AnyToAnyResult
from mdreid.modalities import SUBSETS


def pair_table(result: AnyToAnyResult, metric: str) -> Table:
    """Query subsets as rows, gallery subsets as columns; pairs that were not evaluated show ``-``."""
    values = {(r["query"], r["gallery"]): r[metric] for r in result.rows}
    queries = [q for q in SUBSETS if any(k[0] == q for k in values)]
    galleries = [g for g in SUBSETS if any(k[1] == g for k in values)]
    table = Table(title=f"{metric} (%)  query (rows) -> gallery (columns), similarity={result.similarity}")
    table.add_column("Q \\ G", style="bold")
    for g in galleries:
        table.add_column(g, justify="right")
    for q in queries:
        cells = [f"{values[(q, g)]:.1f}" if (q, g) in values else "-" for g in galleries]
        table.add_row(q, *cells)
    return table


def groups_table(result: AnyToAnyResult) -> Table:
    table = Table(title="Named groups (paper settings)")
    table.add_column("group")
    table.add_column("mAP", justify="right")
    table.add_column("R1", justify="right")
    names = sorted({k.rsplit("/", 1)[0] for k in result.groups})
    for name in names:
        table.add_row(
            name,
            f"{result.groups.get(f'{name}/mAP', float('nan')):.1f}",
            f"{result.groups.get(f'{name}/R1', float('nan')):.1f}",
        )
    return table


def print_result(result: AnyToAnyResult, console: Console | None = None) -> None:
    console = console or Console()
    console.print(pair_table(result, "mAP"))
    console.print(pair_table(result, "R1"))
    if result.groups:
        console.print(groups_table(result))
    console.print(f"score = (mAP + R1) / 2 of RNT->RNT: {result.score:.2f}")
