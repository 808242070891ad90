"""Evaluation figures (PNG): the 7x7 pair heatmaps, CMC curves, multi-modal ranked lists and the t-SNE
modality-gap figure; ``report.write_plots`` writes them all next to the metrics.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot), so nothing leaks between calls and no GUI
backend is needed: saving to PNG goes through Agg. Image grids are plain PIL.
"""

from mdreid.reporting.plots.cmc_curve import cmc_figure
from mdreid.reporting.plots.embedding_tsne import tsne_figure
from mdreid.reporting.plots.heatmap import pair_heatmap
from mdreid.reporting.plots.ranked_list import pick_queries, rank_queries, ranked_list_grid
from mdreid.reporting.plots.report import save_figure, save_image, write_plots

__all__ = [
    "cmc_figure",
    "pair_heatmap",
    "pick_queries",
    "rank_queries",
    "ranked_list_grid",
    "save_figure",
    "save_image",
    "tsne_figure",
    "write_plots",
]
