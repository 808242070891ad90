"""CMC curves (matching rate vs rank) of a few modality pairs, each labelled with its mAP and R1."""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure

from mdreid.metrics.groups import pair_name
from mdreid.metrics.pair_selection import PairSelection
from mdreid.metrics.results import AnyToAnyResult
from mdreid.process.errors import MDReIDError

# The full setting, one missing setting and the four reported mismatched ones: few enough lines to read.
DEFAULT_CMC_PAIRS: tuple[str, ...] = ("RNT->RNT", "RT->NT", "RT->N", "R->N", "R->NT", "R->R")
_MAX_DEFAULT_LINES = 6


def _chosen_pairs(result: AnyToAnyResult, pairs: Sequence[str] | None) -> list[str]:
    """Explicit pairs must all be evaluated; the default keeps those present, else the first evaluated ones."""
    if pairs is not None:
        names = [pair_name(q, g) for q, g in PairSelection.parse(list(pairs))]
        missing = [n for n in names if n not in result.cmc]
        if missing:
            raise MDReIDError(
                f"cmc pairs {', '.join(missing)} were not evaluated; pick from {', '.join(result.cmc)}"
            )
        return names
    names = [n for n in DEFAULT_CMC_PAIRS if n in result.cmc]
    return names or list(result.cmc)[:_MAX_DEFAULT_LINES]


def cmc_figure(result: AnyToAnyResult, pairs: Sequence[str] | None = None, max_rank: int = 20) -> Figure:
    """Matching rate (%) at ranks 1..``max_rank`` (capped at the stored curve length), one line per pair."""
    if max_rank < 1:
        raise MDReIDError(f"cmc max_rank must be >= 1, got {max_rank}")
    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    ax = fig.add_subplot()
    for name in _chosen_pairs(result, pairs):
        curve = result.cmc[name][:max_rank].tolist()
        row = result.row(*name.split("->"))
        label = f"{name}  (mAP {row['mAP']:.1f}, R1 {row['R1']:.1f})"
        ax.plot(range(1, len(curve) + 1), curve, marker="o", markersize=3, label=label)
    ax.set_xlabel("rank")
    ax.set_ylabel("matching rate (%)")
    ax.set_ylim(top=100.5)
    ax.grid(alpha=0.3)
    ax.set_title(f"CMC, similarity={result.similarity}, junk={result.junk}")
    ax.legend(loc="lower right", fontsize=8)
    return fig
