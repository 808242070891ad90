"""Readers of the real benchmarks: ``load_benchmark(name, root)`` returns sorted ``Benchmark`` splits.

Other datasets plug in without editing this package: ``@register_reader("name")`` on a function
``(root, on_missing, on_bad_name) -> Benchmark`` makes ``data.dataset=name`` read through it. A module that
registers readers is imported by the ``mdreid.readers`` entry-point group of an installed package, or by
importing it before the run (docs/extending.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from mdreid.data.readers import msvr310, rgbnt100, rgbnt201, wmveid863
from mdreid.data.readers.common import POLICIES, Layout, check_choice
from mdreid.data.readers.manifest import load_manifest
from mdreid.data.records import Benchmark
from mdreid.process.errors import MDReIDError

DATASETS: tuple[str, ...] = ("rgbnt201", "rgbnt100", "msvr310", "wmveid863")
# what data.dataset / --dataset accept besides registered readers: the benchmarks, or a manifest of your own
# data (root = the file)
SOURCES: tuple[str, ...] = (*DATASETS, "manifest")
ENTRY_POINT_GROUP = "mdreid.readers"

ReadFn = Callable[[Path, str, str], Benchmark]


@dataclass(frozen=True)
class PluginReader:
    """A registered reader: its function and its evaluation junk rule (``camera`` or ``scene``)."""

    read: ReadFn
    junk_rule: str


_PLUGINS: dict[str, PluginReader] = {}
_entry_points_loaded = False


def register_reader(name: str, junk_rule: str = "camera") -> Callable[[ReadFn], ReadFn]:
    """Decorator: ``data.dataset=<name>`` reads through the decorated ``(root, on_missing, on_bad_name) ->
    Benchmark`` function. ``junk_rule`` is how evaluation drops same-view gallery items."""
    key = name.lower()
    if key in SOURCES:
        raise ValueError(f"dataset name {name!r} is taken by a built-in reader")
    check_choice("junk_rule", junk_rule, ("camera", "scene"))

    def register(read: ReadFn) -> ReadFn:
        _PLUGINS[key] = PluginReader(read, junk_rule)
        return read

    return register


def sources() -> tuple[str, ...]:
    """Every name ``data.dataset`` accepts: the built-in ones, then registered readers (installed packages'
    ``mdreid.readers`` entry points are imported on the first call)."""
    global _entry_points_loaded
    if not _entry_points_loaded:
        _entry_points_loaded = True
        for point in entry_points(group=ENTRY_POINT_GROUP):
            point.load()
    return (*SOURCES, *sorted(_PLUGINS))


_LAYOUTS: dict[str, Layout] = {m.LAYOUT.name: m.LAYOUT for m in (rgbnt201, rgbnt100, msvr310, wmveid863)}


def _layout(name: str) -> Layout:
    """The on-disk layout of a benchmark (case-insensitive name); unknown names list the valid ones."""
    return _LAYOUTS[check_choice("dataset", name.lower(), DATASETS)]


def benchmark_folder(name: str) -> str:
    """The top folder of a benchmark under the data root: RGBNT201, RGBNT100, MSVR310 or MSVWild863."""
    return _layout(name).display


def junk_rule(name: str) -> str:
    """The evaluation's junk rule of a benchmark or a registered reader: ``camera`` or ``scene``."""
    plugin = _PLUGINS.get(name.lower())
    return plugin.junk_rule if plugin is not None else _layout(name).junk_rule


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
    plugin = _PLUGINS.get(name.lower())
    if plugin is not None:
        bench = plugin.read(Path(root), on_missing, on_bad_name)
        if bench.junk_rule != plugin.junk_rule:
            raise MDReIDError(
                f"the {name} reader returned junk_rule={bench.junk_rule!r} but was registered with "
                f"{plugin.junk_rule!r}; make them agree"
            )
        return bench
    return _layout(name).load(root, on_missing, on_bad_name)
