"""Top-k search of a gallery index with FAISS: one inner-product index per (query subset -> gallery subset).

A pair's gallery vectors (``pair_vectors``) depend on the query subset too, so each pair searched gets its
own FAISS index over the gallery items that have every modality of G, ids = item rows in the store. It is
made on first use, saved under ``faiss/`` and brought up to date (new items added, nothing retrained) when
the store has grown since. Kinds:

* ``flat``: exhaustive inner products, exact: the metric's ranking (ties by item id);
* ``ivf``: inverted lists (``nlist`` k-means cells trained once on the items present then, ~64 items per
  cell; ``nprobe`` of them searched, 8 by default): the kind for large galleries;
* ``hnsw``: a navigable small-world graph (``M`` = 32 links, ``ef_search`` candidates).

With the GPU build of FAISS and a visible GPU, flat and IVF searches run there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import torch

from mdreid.files.atomic_io import atomic_write
from mdreid.index.kinds import HNSW_LINKS, IVF_NPROBE, IVF_TRAIN_PER_CELL, KINDS, ivf_cells
from mdreid.index.pair_vectors import pair_vectors, similarity_to_distance
from mdreid.index.store import INDEX_ELSEWHERE, GalleryItems, GalleryStore
from mdreid.metrics.groups import pair_name
from mdreid.process.errors import MDReIDError


@dataclass(frozen=True)
class Hit:
    """One result: the gallery item's id (row in the store), its inner product and the metric's distance."""

    rank: int
    item: int
    score: float
    distance: float
    paths: tuple[str, str, str]
    pid: int
    camid: int
    stitched: bool


def _vectors(items: GalleryItems, q_subset: str, g_subset: str, side: str, mode: str):
    vectors, keep = pair_vectors(items.sp, items.sh, items.present, q_subset, g_subset, side, mode)
    return np.ascontiguousarray(vectors.cpu().numpy(), dtype=np.float32), keep.cpu().numpy()


def new_faiss_index(kind: str, dim: int, train: np.ndarray, nlist: int | None = None) -> faiss.Index:
    """An empty inner-product index of ``kind`` with ids; IVF is trained on ``train`` (``nlist`` cells, default
    ``ivf_cells``; k-means on a seeded sample of ``IVF_TRAIN_PER_CELL`` vectors per cell, all when fewer).
    A query's cells are found exactly, by its inner product with every centroid."""
    if kind == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    if kind == "hnsw":
        return faiss.IndexIDMap2(faiss.IndexHNSWFlat(dim, HNSW_LINKS, faiss.METRIC_INNER_PRODUCT))
    if nlist is not None and nlist < 1:
        raise MDReIDError(f"ivf index: nlist (cells) must be >= 1, got {nlist}")
    cells = nlist or ivf_cells(len(train))
    if len(train) < cells:
        raise MDReIDError(
            f"ivf index: {len(train)} gallery vectors cannot train {cells} cells; use kind=flat"
        )
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, cells, faiss.METRIC_INNER_PRODUCT)
    index.cp.max_points_per_centroid = IVF_TRAIN_PER_CELL
    index.cp.min_points_per_centroid = 1  # a small sample per cell is the design, not a mistake to warn of
    index.train(train)
    return index


def read_faiss(path: Path) -> faiss.Index:
    """A saved FAISS index, or one line naming the damaged file and how it is made again."""
    try:
        return faiss.deserialize_index(np.fromfile(path, np.uint8))
    except Exception as err:  # faiss reports a truncated file as a RuntimeError from its C++ reader
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise MDReIDError(
            f"{path}: damaged FAISS file ({reason[:120]}); delete it: the next search or add makes it again "
            "from the index's items"
        ) from err


def pair_index(
    store: GalleryStore, q_subset: str, g_subset: str, kind: str = "flat", nlist: int | None = None
) -> faiss.Index:
    """The FAISS index of the pair over the whole store (made, or caught up with new items, and saved)."""
    if kind not in KINDS:
        raise MDReIDError(f"index kind {kind!r}: use one of {', '.join(KINDS)}")
    key = f"{pair_name(q_subset, g_subset)}/{kind}"
    entry = store.info["faiss"].get(key)
    if entry is not None and not (store.root / entry["file"]).is_file():
        entry = None  # deleted to be made afresh (e.g. an IVF index retrained on today's items)
    items = store.items()
    seen = 0 if entry is None else entry["items_seen"]
    index = None if entry is None else read_faiss(store.root / entry["file"])
    if index is not None and seen == len(items):
        return index
    new = items.rows(seen, len(items))
    vectors, keep = _vectors(new, q_subset, g_subset, "gallery", store.info["similarity"])
    ids = np.arange(seen, len(items), dtype=np.int64)[keep]  # vectors: the kept items only
    if index is None:
        index = new_faiss_index(kind, vectors.shape[1], vectors, nlist)
    index.add_with_ids(vectors, ids)
    file = f"faiss/{q_subset}-{g_subset}.{kind}.faiss"
    atomic_write(
        store.root / file, lambda f: f.write(faiss.serialize_index(index).tobytes()), INDEX_ELSEWHERE
    )
    store.info["faiss"][key] = {"file": file, "items_seen": len(items), "vectors": int(index.ntotal)}
    store.save_info()
    return index


def set_search_params(index: faiss.Index, kind: str, nprobe: int, ef_search: int) -> None:
    """How much of an approximate index a search visits: IVF cells (``nprobe``), HNSW candidates."""
    if kind == "ivf":
        faiss.extract_index_ivf(index).nprobe = nprobe
    if kind == "hnsw":
        faiss.downcast_index(index.index).hnsw.efSearch = ef_search


def on_device(index: faiss.Index, kind: str) -> faiss.Index:
    """The GPU copy of a flat or IVF index when FAISS was built with GPU support and a GPU is visible."""
    if kind != "hnsw" and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        return faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    return index


def search(
    store: GalleryStore,
    queries: GalleryItems,
    q_subset: str,
    g_subset: str,
    k: int = 10,
    kind: str = "flat",
    nprobe: int = IVF_NPROBE,
    ef_search: int = 64,
) -> list[list[Hit]]:
    """The top-k gallery items of each query (every query must have all modalities of ``q_subset``)."""
    if k < 1:
        raise MDReIDError(f"search: top-k must be >= 1, got {k}")
    if nprobe < 1:
        raise MDReIDError(f"search: nprobe (ivf cells searched) must be >= 1, got {nprobe}")
    mode = store.info["similarity"]
    vectors, keep = _vectors(queries, q_subset, g_subset, "query", mode)
    if not keep.all():
        lacking = np.flatnonzero(~keep).tolist()
        raise MDReIDError(f"search: queries {lacking} lack a modality of the query subset {q_subset}")
    index = pair_index(store, q_subset, g_subset, kind)
    if index.ntotal == 0:
        raise MDReIDError(f"search: no gallery item of {store.root} has every modality of {g_subset}")
    set_search_params(index, kind, nprobe, ef_search)
    scores, ids = on_device(index, kind).search(vectors, min(k, index.ntotal))
    items = store.items()
    out = []
    for row_scores, row_ids in zip(scores, ids, strict=True):
        found = [(float(s), int(i)) for s, i in zip(row_scores, row_ids, strict=True) if i >= 0]
        found.sort(key=lambda hit: (-hit[0], hit[1]))  # ties: lower id first, as the metric's stable order
        out.append(
            [
                Hit(
                    rank=r + 1,
                    item=i,
                    score=s,
                    distance=float(similarity_to_distance(torch.tensor(s), mode)),
                    paths=items.paths[i],
                    pid=int(items.pid[i]),
                    camid=int(items.camid[i]),
                    stitched=items.stitched[i],
                )
                for r, (s, i) in enumerate(found)
            ]
        )
    return out
