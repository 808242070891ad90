"""Each modality's share of a match, by dropping it: the similarity of the pair with one query or one gallery
modality removed, next to the full similarity (docs/explain.md).

For a match of a query compared on Q with a gallery item compared on G, the share of a query modality m is
``score(Q -> G) - score(Q \\ {m} -> G)`` and that of a gallery modality ``score(Q -> G) - score(Q -> G \\ {m})``:
how much the similarity falls without it (negative: the match is closer without it). Scores are the metric's
similarities (``pair_similarity``): ``1 - d / 2`` for the concatenating modes (the cosine) and ``1 - d`` for
``paper``, so they equal the scores ``mdreid.index search`` reports. A modality that cannot be dropped (the
side's only one) or whose removal leaves nothing to compare has no share (None).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mdreid.metrics.pair_similarity import CONCAT_MODES, PairDistances
from mdreid.modalities import LETTERS
from mdreid.process.errors import MDReIDError


@dataclass(frozen=True)
class Side:
    """Features of one side's items: ``sp`` / ``sh`` [N, 3, D] (either may be None), ``present`` [N, 3]."""

    sp: Tensor | None
    sh: Tensor | None
    present: Tensor


@dataclass(frozen=True)
class MatchShares:
    """One match: its score and, per modality letter, the score lost when that modality is dropped."""

    score: float
    query: dict[str, float | None]
    gallery: dict[str, float | None]

    def plain(self) -> dict:
        return {"score": self.score, "query": self.query, "gallery": self.gallery}


def similarity(distance: Tensor, mode: str) -> Tensor:
    """The metric's similarity of its distance (inverse of ``2 - 2 s`` resp. ``1 - s``)."""
    return 1.0 - distance / 2.0 if mode in CONCAT_MODES else 1.0 - distance


def pair_scores(query: Side, gallery: Side, q_subset: str, g_subset: str, mode: str) -> Tensor:
    """[Q, G] similarities of the pair (``-inf`` where an item lacks a modality of its side)."""
    dist = PairDistances(
        query.sp, query.sh, query.present.bool(), gallery.sp, gallery.sh, gallery.present.bool()
    ).distance(q_subset, g_subset, mode)
    return torch.where(torch.isinf(dist), -torch.inf, similarity(dist, mode))


def _without(subset: str, letter: str) -> str:
    return subset.replace(letter, "")


def _dropped(query: Side, gallery: Side, q_subset: str, g_subset: str, mode: str) -> Tensor | None:
    """[1, G] scores of a reduced pair, or None when it compares nothing."""
    if not q_subset or not g_subset:
        return None
    try:
        return pair_scores(query, gallery, q_subset, g_subset, mode)
    except MDReIDError:  # the reduced pair compares no features (e.g. no sh and no common modality)
        return None


def drop_one_shares(query: Side, gallery: Side, q_subset: str, g_subset: str, mode: str) -> list[MatchShares]:
    """The shares of one query (``query`` holds 1 item) against every gallery item, in gallery order; every
    item must have all modalities of its side's subset (the matches a search returns do)."""
    if query.present.shape[0] != 1:
        raise MDReIDError(f"drop_one_shares: one query at a time, got {query.present.shape[0]}")
    full = pair_scores(query, gallery, q_subset, g_subset, mode)[0]
    if bool(torch.isinf(full).any()):
        raise MDReIDError(f"drop_one_shares: an item lacks a modality of the pair {q_subset}->{g_subset}")
    q_drop = {c: _dropped(query, gallery, _without(q_subset, c), g_subset, mode) for c in q_subset}
    g_drop = {c: _dropped(query, gallery, q_subset, _without(g_subset, c), mode) for c in g_subset}

    def share(scores: Tensor | None, j: int) -> float | None:
        return None if scores is None else float(full[j] - scores[0, j])

    return [
        MatchShares(
            score=float(full[j]),
            query={c: share(q_drop[c], j) for c in LETTERS if c in q_subset},
            gallery={c: share(g_drop[c], j) for c in LETTERS if c in g_subset},
        )
        for j in range(full.shape[0])
    ]
