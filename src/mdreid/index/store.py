"""The gallery index on disk: features and metadata in append-only safetensors shards, one JSON manifest.

Layout of an index folder::

    index.json                 format, the model that made the features (index.identity), similarity rule,
                               image size, the command that built it, the shards and the FAISS files
    items-00000.safetensors    sp / sh [n, 3, D] float32, present [n, 3] uint8, pid / camid / sceneid [n] int64;
                               the file paths (and stitched flags) as JSON in the safetensors metadata
    faiss/RT-NT.flat.faiss     one FAISS index per (query subset -> gallery subset) pair and kind, made on demand

Every file is written atomically and ``index.json`` last, so a crash leaves the previous index intact; adding
items writes a new shard and never rewrites the old ones. Nothing is pickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save
from torch import Tensor

from mdreid.files.atomic_io import atomic_write, atomic_write_json
from mdreid.process.errors import MDReIDError

FORMAT = 2  # 2: the model is recorded by its sha256 (index.identity)
MANIFEST = "index.json"


@dataclass(frozen=True)
class GalleryItems:
    """Features and metadata of N items (a shard, a whole gallery or a set of queries)."""

    sp: Tensor | None  # [N, 3, D] float32 specific features (None: the model has none)
    sh: Tensor | None  # [N, 3, D] float32 shared features
    present: Tensor  # [N, 3] bool
    pid: Tensor  # [N] int64 (-1: unknown)
    camid: Tensor  # [N] int64
    sceneid: Tensor  # [N] int64
    paths: list[tuple[str, str, str]]  # R, N, T files ("" = absent)
    stitched: list[bool]

    def __len__(self) -> int:
        return len(self.paths)

    def rows(self, start: int, stop: int) -> GalleryItems:
        """Items ``start..stop-1``."""
        cut = lambda x: None if x is None else x[start:stop]  # noqa: E731
        return GalleryItems(
            *(cut(getattr(self, n)) for n in ("sp", "sh", "present", "pid", "camid", "sceneid")),
            paths=self.paths[start:stop],
            stitched=self.stitched[start:stop],
        )

    @staticmethod
    def cat(parts: list[GalleryItems]) -> GalleryItems:
        def join(name: str) -> Tensor | None:
            values = [getattr(p, name) for p in parts]
            return None if values[0] is None else torch.cat(values)

        return GalleryItems(
            *(join(n) for n in ("sp", "sh", "present", "pid", "camid", "sceneid")),
            paths=[p for part in parts for p in part.paths],
            stitched=[s for part in parts for s in part.stitched],
        )


def _shard_bytes(items: GalleryItems) -> bytes:
    tensors = {
        "present": items.present.to(torch.uint8),
        **{k: getattr(items, k).long() for k in ("pid", "camid", "sceneid")},
        **{k: getattr(items, k).float().contiguous() for k in ("sp", "sh") if getattr(items, k) is not None},
    }
    return save(tensors, metadata={"paths": json.dumps(items.paths), "stitched": json.dumps(items.stitched)})


def _read_shard(path: Path, rebuild: str) -> GalleryItems:
    try:
        items = _load_shard(path)
    except MDReIDError:
        raise
    except Exception as err:  # truncated, overwritten or missing: safetensors, JSON and key errors alike
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise MDReIDError(f"{path}: damaged index shard ({reason}); rebuild the index: {rebuild}") from err
    return items


def _load_shard(path: Path) -> GalleryItems:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    tensors = load_file(str(path))
    paths = [tuple(p) for p in json.loads(meta.get("paths", "[]"))]
    if len(paths) != tensors["pid"].shape[0]:
        raise MDReIDError(
            f"{path}: {len(paths)} paths for {tensors['pid'].shape[0]} items; the shard is damaged"
        )
    return GalleryItems(
        tensors.get("sp"),
        tensors.get("sh"),
        tensors["present"].bool(),
        tensors["pid"],
        tensors["camid"],
        tensors["sceneid"],
        paths,  # type: ignore[arg-type]
        [bool(s) for s in json.loads(meta.get("stitched", "[]"))],
    )


# how an index is written to another folder when its own refuses the write (a read-only mount, a full disk)
INDEX_ELSEWHERE = (
    "the index needs a folder you can write: build it in another one (python -m mdreid.index build DIR ...), "
    "or copy an existing index there"
)


class GalleryStore:
    """An index folder: its manifest (``info``), its items, and where its FAISS files go."""

    def __init__(self, root: Path, info: dict[str, Any]) -> None:
        self.root = root
        self.info = info
        self._items: GalleryItems | None = None

    @classmethod
    def create(cls, root: str | Path, items: GalleryItems, settings: dict[str, Any]) -> GalleryStore:
        """A new index of ``items``; ``settings``: model (``index.identity``), similarity, image_size and the
        command that built it (recorded as given)."""
        root = Path(root)
        if (root / MANIFEST).exists():
            raise MDReIDError(
                f"{root} already holds an index; add items with `python -m mdreid.index add {root}`"
            )
        info = {"format": FORMAT, **settings, "features": _kinds(items), "feature_dim": feature_dim(items)}
        store = cls(root, {**info, "shards": [], "faiss": {}})
        store.append(items)
        return store

    @classmethod
    def open(cls, root: str | Path) -> GalleryStore:
        root = Path(root)
        path = root / MANIFEST
        if not path.is_file():
            raise MDReIDError(
                f"{root}: no {MANIFEST}; build an index there with `python -m mdreid.index build`"
            )
        try:
            info = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise MDReIDError(f"{path}: not valid JSON ({err}); rebuild the index") from err
        if info.get("format") != FORMAT:
            raise MDReIDError(
                f"{path}: index format {info.get('format')!r}, this mdreid reads {FORMAT}; rebuild it: "
                f"{info.get('command') or 'python -m mdreid.index build'}"
            )
        return cls(root, info)

    @property
    def size(self) -> int:
        return sum(s["count"] for s in self.info["shards"])

    def items(self) -> GalleryItems:
        """Every item, in the order they were added (an item's row is its id in the FAISS indices)."""
        if self._items is None:
            rebuild = self.info.get("command") or "python -m mdreid.index build"
            shards = [_read_shard(self.root / s["file"], rebuild) for s in self.info["shards"]]
            self._items = GalleryItems.cat(shards)
        return self._items

    def append(self, items: GalleryItems) -> range:
        """Write ``items`` as a new shard; returns their ids."""
        if not len(items):
            raise MDReIDError(f"{self.root}: no items to add")
        if (_kinds(items), feature_dim(items)) != (self.info["features"], self.info["feature_dim"]):
            raise MDReIDError(
                f"{self.root}: the new items have features {_kinds(items)} of size {feature_dim(items)}, the index "
                f"{self.info['features']} of size {self.info['feature_dim']}; extract them with the index's checkpoint"
            )
        start = self.size
        name = f"items-{len(self.info['shards']):05d}.safetensors"
        atomic_write(self.root / name, lambda f: f.write(_shard_bytes(items)), INDEX_ELSEWHERE)
        self.info["shards"].append({"file": name, "count": len(items)})
        self.save_info()
        self._items = None
        return range(start, start + len(items))

    def save_info(self) -> None:
        atomic_write_json(self.root / MANIFEST, self.info, INDEX_ELSEWHERE)


def feature_dim(items: GalleryItems) -> int:
    return (items.sp if items.sp is not None else items.sh).shape[-1]


def _kinds(items: GalleryItems) -> list[str]:
    return [k for k in ("sp", "sh") if getattr(items, k) is not None]
