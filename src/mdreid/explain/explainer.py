"""Explanations of matches by a loaded model: the drop-one shares and the Grad-CAM map of every modality a
match compares, on both sides; or the maps of an identity's logit for one item.

Images are read as the evaluation reads them (``read_modalities``, the evaluation transform) and features
extracted as the index extracts them (``index.extract``), so the scores explained are the search's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from mdreid.data.records import Record
from mdreid.data.transforms import TripletTransform
from mdreid.data.triplet_dataset import read_modalities
from mdreid.explain.cam import grad_cam, identity_target, similarity_target
from mdreid.explain.overlay import model_view, overlay
from mdreid.explain.shares import MatchShares, Side, drop_one_shares
from mdreid.index.extract import extract_items
from mdreid.index.store import GalleryItems
from mdreid.modalities import LETTERS, subset_indices
from mdreid.module import ReIDModule
from mdreid.process.errors import MDReIDError

SIDES: tuple[str, ...] = ("query", "gallery")


@dataclass(frozen=True)
class ModalityCam:
    """One modality's map ``[H, W]`` in [0, 1] and the model-sized image it explains."""

    letter: str
    view: Image.Image
    cam: np.ndarray

    @property
    def overlay(self) -> Image.Image:
        return overlay(self.view, self.cam)


@dataclass(frozen=True)
class MatchExplanation:
    """A query -> gallery match: its shares and the maps of the query's and the gallery item's modalities
    (empty for a side not asked for)."""

    shares: MatchShares
    query: dict[str, ModalityCam]
    gallery: dict[str, ModalityCam]


def _side(items: GalleryItems, row: int, subset: str) -> Side:
    """One item's features with only ``subset`` marked present (the modalities the pair compares)."""
    keep = torch.zeros(1, len(LETTERS), dtype=torch.bool)
    keep[0, list(subset_indices(subset))] = True
    present = items.present[row : row + 1].bool()
    if not bool(present[keep].all()):
        raise MDReIDError(f"item {items.paths[row]} lacks a modality of {subset}")
    cut = lambda x: None if x is None else x[row : row + 1]  # noqa: E731
    return Side(cut(items.sp), cut(items.sh), present & keep)


class Explainer:
    """Explanations with one model; ``similarity`` is the index's rule (``code`` or ``paper``)."""

    def __init__(
        self, model: ReIDModule, similarity: str = "code", device: str | torch.device = "cpu"
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.net = self.model.net
        self.size = tuple(int(x) for x in model.hparams["image_size"])
        self.similarity = similarity
        self._transform = TripletTransform(self.size, train=False)

    def features(self, records: Sequence[Record]) -> GalleryItems:
        return extract_items(self.model, records, device=self.device)

    def _inputs(self, record: Record, subset: str) -> dict[int, tuple[torch.Tensor, Image.Image]]:
        """Per modality of ``subset``: the normalised input ``[3, H, W]`` and the model-sized image."""
        mods = subset_indices(subset)
        images = read_modalities(record, [m in mods for m in range(len(LETTERS))])
        tensors = self._transform(images)
        return {
            m: (t.to(self.device), model_view(img, self.size))
            for m, t, img in zip(mods, tensors, images, strict=True)
        }

    def _cams(self, record: Record, subset: str, target_of) -> dict[str, ModalityCam]:
        return {
            LETTERS[m]: ModalityCam(LETTERS[m], view, grad_cam(self.net, x, record.camid, target_of(m)))
            for m, (x, view) in self._inputs(record, subset).items()
        }

    def match(
        self,
        query: Record,
        gallery: Record,
        pair: tuple[str, str],
        feature: str = "sh",
        items: tuple[GalleryItems, GalleryItems] | None = None,
        sides: tuple[str, ...] = SIDES,
    ) -> MatchExplanation:
        """Shares and maps of ``query`` compared on ``pair[0]`` with ``gallery`` on ``pair[1]``; ``items``: the
        two records' features when the caller has them (else they are extracted); ``sides``: whose maps to
        compute (a side left out gets none: a backward pass per image saved)."""
        if not set(sides) <= set(SIDES):
            raise MDReIDError(f"explain sides {sides}: use 'query' and/or 'gallery'")
        q_items, g_items = items or (self.features([query]), self.features([gallery]))
        q, g = _side(q_items, 0, pair[0]), _side(g_items, 0, pair[1])
        shares = drop_one_shares(q, g, *pair, self.similarity)[0]

        def target(side: str):
            return lambda m: similarity_target(self.net, q, g, pair, self.similarity, side, m, feature)

        return MatchExplanation(
            shares,
            self._cams(query, pair[0], target("query")) if "query" in sides else {},
            self._cams(gallery, pair[1], target("gallery")) if "gallery" in sides else {},
        )

    def identity(
        self, record: Record, subset: str, label: int, feature: str = "sh"
    ) -> dict[str, ModalityCam]:
        """The maps of training class ``label``'s logit for each modality of ``subset`` of ``record``."""
        item = _side(self.features([record]), 0, subset)
        return self._cams(record, subset, lambda m: identity_target(self.net, item, m, feature, label))
