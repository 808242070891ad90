"""k-reciprocal re-ranking of one (query subset -> gallery subset) pair, from the cached per-modality features.

Re-ranking needs three distance matrices. For a cross-modal pair Q -> G they are: query-query distances in
the queries' Q features (the pair Q -> Q), gallery-gallery distances in the gallery's G features (G -> G),
and the pair's own query-gallery distances (Q -> G, the matrix the metric ranks without re-ranking), all under
the same similarity rule (``pair_similarity``). Only the items that have every modality of their side take
part; the others stay ``+inf`` (not comparable), as without re-ranking. Distances are computed in row blocks
on the fly, so nothing of size (Q+G)^2 is held; the result is the [Q, G] matrix.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from mdreid.metrics.functional import default_chunk_rows
from mdreid.metrics.pair_similarity import PairDistances
from mdreid.metrics.rerank import RerankSettings, rerank_row_blocks
from mdreid.modalities import subset_indices


@dataclass(frozen=True)
class SideFeatures:
    """One side's cached features: ``sp`` / ``sh`` [N, 3, D] (either may be None) and ``present`` [N, 3]."""

    sp: Tensor | None
    sh: Tensor | None
    present: Tensor

    def having(self, subset: str) -> tuple[Tensor, SideFeatures]:
        """The rows with every modality of ``subset``, and those rows' features."""
        keep = self.present[:, list(subset_indices(subset))].all(dim=1)
        pick = lambda x: None if x is None else x[keep]  # noqa: E731
        return keep, SideFeatures(pick(self.sp), pick(self.sh), self.present[keep])


def _distances(a: SideFeatures, b: SideFeatures, chunk_size: int) -> PairDistances:
    return PairDistances(a.sp, a.sh, a.present, b.sp, b.sh, b.present, chunk_size=chunk_size)


def _rows(
    left: PairDistances,
    right: PairDistances,
    left_pair: tuple[str, str],
    right_pair: tuple[str, str],
    mode: str,
) -> Iterator[Tensor]:
    """Row blocks of ``[left | right]``: two distance matrices with the same rows, side by side."""
    for (_, a), (_, b) in zip(left.chunks([left_pair], mode), right.chunks([right_pair], mode), strict=True):
        yield torch.cat([next(a), next(b)], dim=1)


def reranked_pair_distance(
    query: SideFeatures,
    gallery: SideFeatures,
    q_subset: str,
    g_subset: str,
    mode: str,
    settings: RerankSettings,
    chunk_size: int | None = None,
) -> Tensor:
    """The re-ranked [Q, G] distances of the pair ``q_subset -> g_subset`` (``+inf`` = not comparable)."""
    q_keep, q = query.having(q_subset)
    g_keep, g = gallery.having(g_subset)
    out = torch.full((q_keep.numel(), g_keep.numel()), torch.inf, dtype=torch.float32)
    if q.present.shape[0] == 0 or g.present.shape[0] == 0:
        return out
    rows = chunk_size or default_chunk_rows(q.present.shape[0] + g.present.shape[0])
    qq, qg, gq, gg = (_distances(a, b, rows) for a, b in ((q, q), (q, g), (g, q), (g, g)))

    def row_blocks() -> Iterator[Tensor]:
        yield from _rows(qq, qg, (q_subset, q_subset), (q_subset, g_subset), mode)
        yield from _rows(gq, gg, (g_subset, q_subset), (g_subset, g_subset), mode)

    reranked = rerank_row_blocks(row_blocks, q.present.shape[0], g.present.shape[0], settings)
    out[q_keep.nonzero()[:, 0].cpu()[:, None], g_keep.nonzero()[:, 0].cpu()[None, :]] = reranked.float()
    return out
