"""What the search page does, without the page: read a query's images, search an index (optionally with
k-reciprocal re-ranking), and explain each match (drop-one shares, Grad-CAM overlays).

The model is loaded once (the index's checkpoint unless another is named); an index is usable only when its
recorded model identity (``index.identity``: the checkpoint's sha256) is that of the loaded checkpoint, so a
page never ranks one model's queries against another model's gallery, even when a training has rewritten the
file at the index's checkpoint path, and a copy of the same checkpoint elsewhere is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from mdreid.data.records import Record
from mdreid.explain.explainer import Explainer, MatchExplanation
from mdreid.explain.shares import MatchShares, Side, drop_one_shares
from mdreid.files.file_hash import sha256
from mdreid.index.identity import verify_same_model
from mdreid.index.search import Hit, search
from mdreid.index.store import GalleryItems, GalleryStore
from mdreid.metrics.pair_rerank import SideFeatures, reranked_pair_distance
from mdreid.metrics.rerank import RerankSettings
from mdreid.modalities import LETTERS, subset_indices
from mdreid.process.errors import MDReIDError


@dataclass(frozen=True)
class Match:
    """One ranked gallery item: the index's hit (score = the plain similarity) and its shares; with
    re-ranking, ``reranked`` is the re-ranked distance it was ordered by."""

    hit: Hit
    shares: MatchShares
    reranked: float | None = None


def check_image(path: str | None, what: str) -> str | None:
    """``path`` if it is a readable image, None if not given; anything else is a named error."""
    if not path:
        return None
    try:
        with Image.open(path) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise MDReIDError(
            f"the {what} file {Path(path).name} is not an image ({err}); upload a JPEG or PNG"
        ) from err
    return str(path)


def _letters(mask: torch.Tensor) -> str:
    return "".join(c for c, p in zip(LETTERS, mask.tolist(), strict=True) if p)


class SearchEngine:
    """A loaded model and the indices opened with it (by folder)."""

    def __init__(self, model, checkpoint: str | Path, device: str | torch.device = "cpu") -> None:
        self.checkpoint = Path(checkpoint).resolve()
        self.digest = sha256(self.checkpoint)
        self.explainer = Explainer(model, device=device)
        self._stores: dict[Path, GalleryStore] = {}

    def store(self, folder: str | Path) -> GalleryStore:
        """The index at ``folder``, refused unless it holds this model's features."""
        root = Path(folder).expanduser().resolve()
        if root not in self._stores:
            store = GalleryStore.open(root)
            verify_same_model(store.info["model"], root, self.checkpoint, self.digest)
            self._stores[root] = store
        return self._stores[root]

    def query(self, files: dict[str, str | None], camid: int) -> Record:
        """A query record from image files by modality letter (None: absent)."""
        paths = tuple(check_image(files.get(c), f"{c} query") or "" for c in LETTERS)
        if not any(paths):
            raise MDReIDError("no query image: upload at least one of RGB, NIR, TIR")
        if camid is None or int(camid) != camid or camid < -1:
            raise MDReIDError(f"camera id {camid!r}: give the query camera's id (-1: none the model knows)")
        return Record(paths, pid=-1, camid=int(camid), split="query")

    def item_record(self, folder: str | Path, item: int) -> Record:
        """Gallery item ``item`` of an index as a query record (to search with its images)."""
        items = self.store(folder).items()
        if not 0 <= item < len(items):
            raise MDReIDError(f"item {item}: the index has items 0..{len(items) - 1}")
        return Record(
            items.paths[item], int(items.pid[item]), int(items.camid[item]), stitched=items.stitched[item]
        )

    def search(
        self, folder: str | Path, record: Record, g_subset: str, top_k: int = 10, rerank: bool = False
    ) -> tuple[str, list[Match]]:
        """(query subset, ranked matches) of ``record`` on its present modalities against ``g_subset``."""
        store = self.store(folder)
        query = self.explainer.features([record])
        kinds = [k for k in ("sp", "sh") if getattr(query, k) is not None]
        if kinds != store.info["features"] or query.sh.shape[-1] != store.info["feature_dim"]:
            raise MDReIDError(
                f"{store.root} holds features {store.info['features']}; this model gives {kinds}"
            )
        try:
            subset_indices(g_subset)
        except ValueError as err:
            raise MDReIDError(f"gallery modalities: {err}") from err
        q_subset = _letters(query.present[0])
        mode = store.info["similarity"]
        hits = search(store, query, q_subset, g_subset, k=store.size if rerank else top_k)[0]
        reranked = None
        if rerank:
            hits, reranked = self._rerank(store.items(), query, hits, q_subset, g_subset, mode, top_k)
        gallery = GalleryItems.cat([store.items().rows(h.item, h.item + 1) for h in hits])
        shares = drop_one_shares(_side(query), _side(gallery), q_subset, g_subset, mode)
        return q_subset, [
            Match(hit, share, None if reranked is None else reranked[i])
            for i, (hit, share) in enumerate(zip(hits, shares, strict=True))
        ]

    @staticmethod
    def _rerank(items, query, hits, q_subset, g_subset, mode, top_k):
        """The top-k of every comparable item by k-reciprocal re-ranking among the gallery's items."""
        dist = reranked_pair_distance(
            SideFeatures(query.sp, query.sh, query.present),
            SideFeatures(items.sp, items.sh, items.present),
            q_subset,
            g_subset,
            mode,
            RerankSettings(),
        )[0]
        by_item = {h.item: h for h in hits}
        order = sorted(by_item, key=lambda i: (float(dist[i]), i))[:top_k]
        ranked = [replace(by_item[i], rank=r + 1) for r, i in enumerate(order)]
        return ranked, [float(dist[i]) for i in order]

    def explain(
        self, query: Record, q_subset: str, match: Match, g_subset: str, feature: str
    ) -> MatchExplanation:
        hit = match.hit
        gallery = Record(hit.paths, hit.pid, hit.camid, stitched=hit.stitched)
        return self.explainer.match(query, gallery, (q_subset, g_subset), feature)


def _side(items: GalleryItems) -> Side:
    return Side(items.sp, items.sh, items.present)
