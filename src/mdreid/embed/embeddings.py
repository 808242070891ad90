"""What an ``Embedder`` returns: per-modality features, the presence mask, and the metric's view of them.

A multi-modal item has no single embedding: which blocks are compared depends on the query subset and the
gallery subset (``metrics.pair_similarity``). ``Embeddings`` keeps the raw ``[N, 3, D]`` features and gives,
for a chosen pair, the vector and the similarity that ``AnyToAnyReID`` uses, so a caller ranks exactly as
the evaluation does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mdreid.feature_file.schema import FeatureSet
from mdreid.index.pair_vectors import pair_vectors
from mdreid.metrics.pair_similarity import CONCAT_MODES, PairDistances
from mdreid.modalities import LETTERS, subset_indices
from mdreid.process.errors import MDReIDError


def letters(mask: Sequence[bool]) -> str:
    """``[True, False, True]`` -> ``"RT"``."""
    return "".join(c for c, p in zip(LETTERS, mask, strict=True) if p)


@dataclass(frozen=True)
class Embeddings:
    """N embedded items: ``sp`` / ``sh`` ``[N, 3, D]`` float32 on the CPU (modalities R, N, T; zeros where
    absent; ``sp`` None for a model with one feature per modality, stored as ``sh``), ``present`` ``[N, 3]``
    bool, ``camid`` ``[N]`` int64 (-1: no camera embedding), and ``mode``, the similarity rule
    (``eval.similarity`` of the checkpoint unless chosen otherwise)."""

    sp: Tensor | None
    sh: Tensor
    present: Tensor
    camid: Tensor
    mode: str = "code"

    def __len__(self) -> int:
        return int(self.present.shape[0])

    @property
    def subsets(self) -> list[str]:
        """The modality subset each item has, e.g. ``["RNT", "T", ...]``."""
        return [letters(row) for row in self.present.tolist()]

    def rows(self, index: Tensor | Sequence[int] | slice) -> Embeddings:
        """The items at ``index`` (a slice, integer positions or a bool mask)."""
        pick = (lambda x: x[index]) if isinstance(index, slice) else (lambda x: x[torch.as_tensor(index)])
        sp = None if self.sp is None else pick(self.sp)
        return Embeddings(sp, pick(self.sh), pick(self.present), pick(self.camid), self.mode)

    def has(self, subset: str) -> Tensor:
        """``[N]`` bool: the items that have every modality of ``subset``."""
        return self.present[:, list(subset_indices(subset))].all(dim=1)

    def _subset(self, subset: str | None, side: str) -> str:
        if subset is not None:
            return subset.upper()
        mixed = sorted(set(self.subsets))
        if len(mixed) != 1:
            raise MDReIDError(
                f"the {side} items have different modalities ({', '.join(mixed)}); name the {side} subset"
            )
        return mixed[0]

    def pair_features(self, q_subset: str, g_subset: str, side: str = "query") -> Tensor:
        """``[N, K]``: every item's vector on ``side`` of the pair ``q_subset -> g_subset``; the inner product
        of a query vector and a gallery vector is the metric's similarity (a cosine in the ``code`` and
        ``common`` rules). Every item must have the modalities of its side's subset."""
        subset = q_subset if side == "query" else g_subset
        missing = ~self.has(subset)
        if bool(missing.any()):
            row = int(torch.nonzero(missing)[0])
            raise MDReIDError(
                f"item {row} has {self.subsets[row] or 'no modality'}, not every modality of the {side} subset "
                f"{subset}; keep the items that do with .rows(embeddings.has({subset!r}))"
            )
        vectors, _ = pair_vectors(self.sp, self.sh, self.present, q_subset, g_subset, side, self.mode)
        return vectors

    def similarity(
        self, gallery: Embeddings, q_subset: str | None = None, g_subset: str | None = None
    ) -> Tensor:
        """``[N, G]``: the metric's similarity of these items (queries) to ``gallery`` for the pair
        ``q_subset -> g_subset`` (default: the one subset each side's items all have). Higher is more
        similar; ``-inf`` where an item lacks a modality of its side's subset (the metric ranks it nowhere).

        In the ``code`` and ``common`` rules it is the cosine of the pair's concatenated blocks (the metric's
        distance is ``2 - 2 * similarity``), in ``paper`` the mean of per-block cosines (distance
        ``1 - similarity``)."""
        if gallery.mode != self.mode or (gallery.sp is None) != (self.sp is None):
            raise MDReIDError("query and gallery embeddings come from different models or similarity rules")
        q_subset, g_subset = self._subset(q_subset, "query"), gallery._subset(g_subset, "gallery")
        pairs = PairDistances(self.sp, self.sh, self.present, gallery.sp, gallery.sh, gallery.present)
        distance = pairs.distance(q_subset, g_subset, self.mode)
        return 1.0 - distance / 2.0 if self.mode in CONCAT_MODES else 1.0 - distance

    def feature_set(
        self, pid: Tensor, is_query: Tensor, is_gallery: Tensor, junk: str, **meta: Any
    ) -> FeatureSet:
        """These features as a feature file's content (docs/feature_files.md): ``features`` = ``sp`` and
        ``shared`` = ``sh`` (one feature per modality: ``features`` = ``sh``), as ``mdreid.eval`` writes them."""
        decoupled = self.sp is not None
        return FeatureSet(
            features=self.sp if decoupled else self.sh,
            shared=self.sh if decoupled else None,
            present=self.present,
            pid=pid,
            camid=self.camid,
            is_query=is_query,
            is_gallery=is_gallery,
            junk=junk,
            **meta,
        )

    @staticmethod
    def cat(parts: Sequence[Embeddings]) -> Embeddings:
        """The items of ``parts`` in order (one model's)."""
        if not parts:
            raise MDReIDError("no embeddings to join")
        sp = None if parts[0].sp is None else torch.cat([p.sp for p in parts])  # type: ignore[misc]
        joined = {k: torch.cat([getattr(p, k) for p in parts]) for k in ("sh", "present", "camid")}
        return Embeddings(sp=sp, mode=parts[0].mode, **joined)

    @classmethod
    def from_mapping(cls, tensors: Mapping[str, Tensor], mode: str) -> Embeddings:
        """From ``{"sp", "sh", "present", "camid"}`` tensors (``sp`` may be missing)."""
        return cls(tensors.get("sp"), tensors["sh"], tensors["present"].bool(), tensors["camid"].long(), mode)
