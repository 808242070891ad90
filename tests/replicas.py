"""Replica trees of the three real benchmarks, built from the filename inventories in shared/manifests.

The names, ids, cameras and scenes are the real ones; every file is a hard link to ONE tiny valid JPEG, so
the ~40k files of all three replicas take about a second. The folder layout is written out here on purpose
(not taken from the readers) so that tests compare the readers with an independent statement of
docs/datasets.md.
"""

from __future__ import annotations

import io
import os
import shutil
from collections import defaultdict
from pathlib import Path

import pytest
from PIL import Image

# /work/shared/manifests locally; in CI the repo is cloned next to a copy of shared/.
MANIFESTS_DIR = Path(__file__).resolve().parents[2] / "shared" / "manifests"

QUERY_PER_GROUP = 5  # RGBNT100 query: 5 of every 25-image (pid, camera) gallery group (1,715 files)

# benchmark -> (split folder under the benchmark folder, manifest stem or None when derived from the gallery)
_SPLITS: dict[str, tuple[tuple[str, str | None], ...]] = {
    "rgbnt201": (("train_171", "rgbnt201_train"), ("test", "rgbnt201_test")),
    "rgbnt100": (
        ("bounding_box_train", "rgbnt100_train"),
        ("bounding_box_test", "rgbnt100_test"),
        ("query", None),
    ),
    "msvr310": (
        ("bounding_box_train", "msvr310_train"),
        ("bounding_box_test", "msvr310_test"),
        ("query3", "msvr310_query3"),
    ),
}
_TOP = {"rgbnt201": "RGBNT201", "rgbnt100": "RGBNT100/rgbir", "msvr310": "MSVR310"}
_SIZES = {"rgbnt201": (32, 64), "rgbnt100": (768, 128), "msvr310": (64, 32)}  # (width, height)


def manifests_or_skip() -> Path:
    """The manifests folder, or skip the calling test when this checkout has no shared/ next to it."""
    if not (MANIFESTS_DIR / "rgbnt201_train.txt").is_file():
        pytest.skip(f"filename manifests not found at {MANIFESTS_DIR} (shared/ must sit next to the repo)")
    return MANIFESTS_DIR


def placeholder_jpeg(size: tuple[int, int]) -> bytes:
    """A small valid JPEG of ``size`` (width, height), grey, so that decoding checks pass."""
    buf = io.BytesIO()
    Image.new("RGB", size, (128, 128, 128)).save(buf, format="JPEG", quality=50)
    return buf.getvalue()


def _select(names: list[str], limit_ids: int | None, keep_ids: set[str] | None = None) -> list[str]:
    """Names of the first ``limit_ids`` sorted ids (or of ``keep_ids``, for query lists tied to a gallery)."""
    if keep_ids is None:
        ids = sorted({n.split("_")[0] for n in names})
        keep_ids = set(ids if limit_ids is None else ids[:limit_ids])
    return [n for n in names if n.split("_")[0] in keep_ids]


def _rgbnt100_query(gallery: list[str]) -> list[str]:
    """The first QUERY_PER_GROUP names of each (pid, camera) gallery group: the real query list is not public."""
    groups: dict[str, list[str]] = defaultdict(list)
    for name in sorted(gallery):
        groups[name[:10]].append(name)  # "PPPP_cCCCC"
    return [n for group in groups.values() for n in group[:QUERY_PER_GROUP]]


# A handful of real names per split: trees that need no manifests, for tests of edge cases and bad input.
TINY_NAMES: dict[str, dict[str, list[str]]] = {
    "rgbnt201": {
        "train_171": [
            "000009_cam3_1_00.jpg",
            "000009_cam3_1_01.jpg",
            "000028_cam1_0_02.jpg",
            "000205_cam2_0_02.jpg",
        ],
        "test": [
            "000258_cam1_0_00.jpg",
            "000258_cam2_0_00.jpg",
            "000299_cam1_0_03.jpg",
            "000299_cam2_0_12.jpg",
        ],
    },
    "rgbnt100": {
        "bounding_box_train": [
            "0501_c0001_000.jpg",
            "0539_c0001_009.jpg",
            "0539_c0004_001.jpg",
            "0599_c0006_024.jpg",
        ],
        "bounding_box_test": [
            "0502_c0001_000.jpg",
            "0502_c0002_003.jpg",
            "0600_c0008_024.jpg",
            "0600_c0003_000.jpg",
        ],
        "query": ["0502_c0001_000.jpg", "0600_c0008_024.jpg"],
    },
    "msvr310": {
        "bounding_box_train": [
            "0001_s002_v0_000.jpg",
            "0015_s017_v5_008.jpg",
            "0094_s023_v1_007.jpg",
            "0268_s000_v0_000.jpg",
        ],
        "bounding_box_test": [
            "0002_s002_v0_000.jpg",
            "0002_s013_v1_002.jpg",
            "0331_s000_v7_007.jpg",
            "0331_s004_v3_008.jpg",
        ],
        "query3": ["0002_s002_v0_000.jpg", "0002_s013_v1_002.jpg"],
    },
}


def _destinations(name: str, split_dir: Path, filename: str) -> list[Path]:
    if name == "rgbnt201":
        return [split_dir / m / filename for m in ("RGB", "NI", "TI")]
    if name == "msvr310":
        return [split_dir / filename[:4] / m / filename for m in ("vis", "ni", "th")]
    return [split_dir / filename]


def benchmark_dir(name: str, root: Path) -> Path:
    """Where ``write_tree`` puts the split folders of ``name``: root/RGBNT201, root/RGBNT100/rgbir, root/MSVR310."""
    return Path(root) / _TOP[name]


def write_tree(name: str, root: Path, names_by_split: dict[str, list[str]]) -> Path:
    """Write every file of every modality for the given split folder -> filenames; return ``root``.

    All files are hard links to one placeholder JPEG of the benchmark's typical size (768x128 for RGBNT100).
    """
    root = Path(root)
    top = benchmark_dir(name, root)
    top.mkdir(parents=True, exist_ok=True)
    source = root / f".placeholder_{name}.jpg"
    source.write_bytes(placeholder_jpeg(_SIZES[name]))
    made_dirs: set[Path] = set()
    for split, filenames in names_by_split.items():
        (top / split).mkdir(parents=True, exist_ok=True)
        for filename in filenames:
            for dest in _destinations(name, top / split, filename):
                if dest.parent not in made_dirs:
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    made_dirs.add(dest.parent)
                try:
                    os.link(source, dest)
                except OSError:  # a filesystem without hard links
                    shutil.copyfile(source, dest)
    return root


def build_tiny(name: str, root: Path) -> Path:
    """The TINY_NAMES tree of ``name`` under ``root``; returns ``root``."""
    return write_tree(name, root, TINY_NAMES[name])


def build_replica(name: str, root: Path, manifests_dir: Path, limit_ids: int | None = None) -> Path:
    """Write the ``name`` replica under ``root`` and return ``root`` (the folder to pass as data root).

    ``limit_ids`` keeps the first N sorted ids of train and gallery; query lists keep only kept gallery ids.
    """
    names_by_split: dict[str, list[str]] = {}
    gallery: list[str] = []
    for split, stem in _SPLITS[name]:
        if stem is None:
            names = _rgbnt100_query(gallery)
        else:
            listed = (manifests_dir / f"{stem}.txt").read_text().split()
            gallery_ids = {n.split("_")[0] for n in gallery}
            names = _select(listed, limit_ids, gallery_ids if split in ("query", "query3") else None)
        if split in ("bounding_box_test", "test"):
            gallery = names
        names_by_split[split] = names
    return write_tree(name, root, names_by_split)
