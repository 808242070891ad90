"""Readers of the three real benchmarks: ``load_benchmark(name, root)`` returns sorted ``Benchmark`` splits."""

from __future__ import annotations

from pathlib import Path

from mdreid.data.readers import msvr310, rgbnt100, rgbnt201
from mdreid.data.readers.common import POLICIES, Layout, check_choice
from mdreid.data.readers.manifest import load_manifest
from mdreid.data.records import Benchmark

DATASETS: tuple[str, ...] = ("rgbnt201", "rgbnt100", "msvr310")
# what data.dataset / --dataset accept: the benchmarks, or a manifest of your own data (root = the file)
SOURCES: tuple[str, ...] = (*DATASETS, "manifest")

_LAYOUTS: dict[str, Layout] = {m.LAYOUT.name: m.LAYOUT for m in (rgbnt201, rgbnt100, msvr310)}


def _layout(name: str) -> Layout:
    """The on-disk layout of a benchmark (case-insensitive name); unknown names list the valid ones."""
    return _LAYOUTS[check_choice("dataset", name.lower(), DATASETS)]


def benchmark_folder(name: str) -> str:
    """The top folder of a benchmark under the data root: RGBNT201, RGBNT100 or MSVR310."""
    return _layout(name).display


def junk_rule(name: str) -> str:
    """The evaluation's junk rule of a benchmark: ``camera`` or ``scene``."""
    return _layout(name).junk_rule


def split_folders(name: str) -> dict[str, str]:
    """Role (train, query, gallery) -> split folder name, e.g. RGBNT201's query and gallery are both ``test``."""
    return dict(_layout(name).splits)


def load_benchmark(
    name: str, root: str | Path, on_missing: str = "error", on_bad_name: str = "error"
) -> Benchmark:
    """Read a benchmark from ``root``, the folder that contains its top folder (``RGBNT201/``, ...).

    ``on_missing``/``on_bad_name`` = "error" stop on a triplet lacking a modality file or a ``.jpg`` that
    breaks the filename rule; "skip" drops those with one warning. Non-``.jpg`` and hidden files are ignored.
    """
    check_choice("data.on_missing", on_missing, POLICIES)
    check_choice("data.on_bad_name", on_bad_name, POLICIES)
    if name.lower() == "manifest":
        return load_manifest(root, on_missing, on_bad_name)
    return _layout(name).load(root, on_missing, on_bad_name)
