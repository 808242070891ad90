"""Write every evaluation plot of one result into a folder, atomically, and say where they went."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from matplotlib.figure import Figure
from PIL import Image
from torch import Tensor

from mdreid.data.records import Record
from mdreid.files.atomic_io import atomic_write
from mdreid.metrics.pair_selection import PairSelection
from mdreid.metrics.pair_similarity import plan_pair
from mdreid.metrics.results import AnyToAnyResult
from mdreid.process.errors import MDReIDError
from mdreid.reporting.plots.cmc_curve import cmc_figure
from mdreid.reporting.plots.embedding_tsne import tsne_figure
from mdreid.reporting.plots.heatmap import pair_heatmap
from mdreid.reporting.plots.ranked_list import pick_queries, ranked_list_grid

log = logging.getLogger(__name__)

DPI = 120
LIST_PAIRS: tuple[tuple[str, str], ...] = (("RNT", "RNT"), ("R", "N"), ("RT", "NT"))


def save_figure(fig: Figure, path: str | Path) -> Path:
    return atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=DPI))


def save_image(image: Image.Image, path: str | Path) -> Path:
    return atomic_write(path, lambda fh: image.save(fh, format="PNG"))


def write_plots(
    result: AnyToAnyResult,
    samples: Mapping[str, Tensor | None],
    records: Sequence[Record] | None,
    out_dir: str | Path,
    similarity: str = "code",
    junk: str = "camera",
    pairs_for_lists: Sequence = LIST_PAIRS,
    num_queries: int = 4,
    seed: int = 0,
    explain: Callable | None = None,
) -> dict[str, Path]:
    """heatmap_mAP/R1.png, cmc.png, ranked_<Q>-<G>.png per list pair and tsne.png; returns stem -> path.

    Ranked lists show the images, so they are drawn only with the ``records`` (saved features have none);
    any pair works, and one whose features cannot be compared (no shared features and no common modality)
    or that has no scored query is skipped with a warning. With ``explain`` (``Explainer.match``) their tiles
    are Grad-CAM overlays.
    """
    out = Path(out_dir)
    written = {
        f"heatmap_{metric}": save_figure(pair_heatmap(result, metric), out / f"heatmap_{metric}.png")
        for metric in ("mAP", "R1")
    }
    written["cmc"] = save_figure(cmc_figure(result), out / "cmc.png")
    has_sp, has_sh = samples.get("sp") is not None, samples.get("sh") is not None
    if result.rerank is not None:  # the lists rank by the plain distances, which the scores no longer use
        log.warning("no ranked lists: they show the ranking without re-ranking, and eval.rerank=true")
        pairs_for_lists = ()
    for q, g in PairSelection.parse(list(pairs_for_lists)) if records is not None and pairs_for_lists else ():
        try:
            plan_pair(q, g, similarity, has_sp, has_sh)
        except MDReIDError as err:
            log.warning("skipping the ranked list of %s->%s: %s", q, g, err)
            continue
        rows = pick_queries(samples, (q, g), num_queries, seed, similarity, junk)
        if not rows:
            log.warning("skipping the ranked list of %s->%s: no query has a valid positive", q, g)
            continue
        name = f"ranked_{q}-{g}"
        grid = ranked_list_grid(samples, records, (q, g), rows, similarity, junk, explain=explain)
        written[name] = save_image(grid, out / f"{name}.png")
    written["tsne"] = save_figure(tsne_figure(samples, seed=seed), out / "tsne.png")
    return written
