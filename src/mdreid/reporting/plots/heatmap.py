"""The 7x7 query-subset x gallery-subset heatmap of one metric: the any-to-any result at a glance."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from mdreid.metrics.results import ROW_METRICS, AnyToAnyResult
from mdreid.modalities import SUBSETS
from mdreid.process.errors import MDReIDError

_CMAP = "viridis"
_DARK_BELOW = 50.0  # viridis is dark under ~half its range: white text there, black above


def pair_heatmap(result: AnyToAnyResult, metric: str = "mAP") -> Figure:
    """Query subsets as rows, gallery subsets as columns (canonical order), values in percent.

    Pairs that were not evaluated are grey and carry no text, so a partial run never looks like a zero.
    """
    if metric not in ROW_METRICS:
        raise MDReIDError(
            f"heatmap metric {metric!r} is not a result column: use one of {', '.join(ROW_METRICS)}"
        )
    values = np.full((len(SUBSETS), len(SUBSETS)), np.nan)
    for row in result.rows:
        values[SUBSETS.index(row["query"]), SUBSETS.index(row["gallery"])] = float(row[metric])
    fig = Figure(figsize=(6.4, 5.6), layout="constrained")
    ax = fig.add_subplot()
    cmap = colormaps[_CMAP].with_extremes(bad="0.85")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=0.0, vmax=100.0)
    for (i, j), value in np.ndenumerate(values):
        if not np.isnan(value):
            colour = "white" if value < _DARK_BELOW else "black"
            ax.text(j, i, f"{value:.1f}", ha="center", va="center", color=colour, fontsize=9)
    ax.set_xticks(range(len(SUBSETS)), SUBSETS)
    ax.set_yticks(range(len(SUBSETS)), SUBSETS)
    ax.set_xlabel("gallery subset")
    ax.set_ylabel("query subset")
    ax.set_title(f"{metric} (%) query -> gallery, similarity={result.similarity}")
    fig.colorbar(image, ax=ax, label=f"{metric} (%)")
    return fig
