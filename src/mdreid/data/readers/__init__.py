"""Readers of the real benchmarks: ``load_benchmark(name, root)`` returns sorted ``Benchmark`` splits.

Other datasets plug in without editing this package: ``@register_reader("name")`` on a function
``(root, on_missing, on_bad_name, **reader_args) -> Benchmark`` makes ``data.dataset=name`` read through it,
with ``data.reader_args`` as its keywords. Readers are plug-ins of the ``READERS`` registry: an installed
package makes its module known through the ``mdreid.readers`` entry-point group (docs/extending.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mdreid.data.readers import msvr310, rgbnt100, rgbnt201, wmveid863
from mdreid.data.readers.common import POLICIES, Layout, check_choice
from mdreid.data.readers.manifest import load_manifest
from mdreid.data.readers.plugin_output import check_reader_output
from mdreid.data.records import Benchmark
from mdreid.plugins import Plugin, Registry
from mdreid.process.errors import MDReIDError

DATASETS: tuple[str, ...] = ("rgbnt201", "rgbnt100", "msvr310", "wmveid863")
# what data.dataset / --dataset accept besides registered readers: the benchmarks, or a manifest of your own
# data (root = the file)
SOURCES: tuple[str, ...] = (*DATASETS, "manifest")
# what mdreid passes every reader before data.reader_args
READER_ARGS = ("root", "on_missing", "on_bad_name")

READERS = Registry("dataset reader", "mdreid.readers", "data.dataset", "register_reader", reserved=SOURCES)

ReadFn = Callable[..., Benchmark]


def register_reader(name: str, junk_rule: str = "camera") -> Callable[[ReadFn], ReadFn]:
    """Decorator: ``data.dataset=<name>`` reads through the decorated ``(root, on_missing, on_bad_name,
    **reader_args) -> Benchmark`` function. ``junk_rule`` is how evaluation drops same-view gallery items."""
    check_choice("junk_rule", junk_rule, ("camera", "scene"))
    return READERS.register(name, junk_rule=junk_rule)


def sources() -> tuple[str, ...]:
    """Every name ``data.dataset`` accepts: the built-in ones, then registered readers (installed packages'
    included)."""
    return (*SOURCES, *READERS.names())


def reader(
    name: str, reader_args: Mapping[str, Any] | None = None, key: str = "data.dataset"
) -> Plugin | None:
    """The registered reader ``name`` (None for a built-in one), checked against ``reader_args``: an unknown
    name (the value of ``key``), or arguments its signature does not take, is one line saying how to fix it."""
    if name.lower() in SOURCES:
        if reader_args:
            raise MDReIDError(
                f"data.reader_args={dict(reader_args)}: the built-in reader {name.lower()} takes none; set "
                "data.reader_args=null"
            )
        return None
    plugin = READERS.get(name.lower(), SOURCES, key)
    READERS.check_call(plugin, "data.reader_args", READER_ARGS, dict(reader_args or {}))
    return plugin


_LAYOUTS: dict[str, Layout] = {m.LAYOUT.name: m.LAYOUT for m in (rgbnt201, rgbnt100, msvr310, wmveid863)}


def _layout(name: str) -> Layout:
    """The on-disk layout of a benchmark (case-insensitive name); unknown names list the valid ones."""
    return _LAYOUTS[check_choice("dataset", name.lower(), DATASETS)]


def benchmark_folder(name: str) -> str:
    """The top folder of a benchmark under the data root: RGBNT201, RGBNT100, MSVR310 or MSVWild863."""
    return _layout(name).display


def junk_rule(name: str) -> str:
    """The evaluation's junk rule of a benchmark or a registered reader: ``camera`` or ``scene``."""
    plugin = reader(name)
    return plugin.meta["junk_rule"] if plugin is not None else _layout(name).junk_rule


def split_folders(name: str) -> dict[str, str]:
    """Role (train, query, gallery) -> split folder name, e.g. RGBNT201's query and gallery are both ``test``;
    a manifest or a reader of your own lists its files itself: ``(manifest)``, ``(reader NAME)``."""
    key = name.lower()
    if key in DATASETS:
        return dict(_layout(key).splits)
    return dict.fromkeys(
        ("train", "query", "gallery"), "(manifest)" if key == "manifest" else f"(reader {key})"
    )


def load_benchmark(
    name: str,
    root: str | Path,
    on_missing: str = "error",
    on_bad_name: str = "error",
    reader_args: Mapping[str, Any] | None = None,
) -> Benchmark:
    """Read a benchmark from ``root``, the folder that contains its top folder (``RGBNT201/``, ...).

    ``on_missing``/``on_bad_name`` = "error" stop on a triplet lacking a modality file or a ``.jpg`` that
    breaks the filename rule; "skip" drops those with one warning. Non-``.jpg`` and hidden files are ignored.
    A registered reader gets ``reader_args`` as keywords, and what it returns is checked.
    """
    check_choice("data.on_missing", on_missing, POLICIES)
    check_choice("data.on_bad_name", on_bad_name, POLICIES)
    plugin = reader(name, reader_args)
    if plugin is not None:
        bench = plugin.target(Path(root), on_missing, on_bad_name, **dict(reader_args or {}))
        return check_reader_output(bench, plugin)
    if name.lower() == "manifest":
        return load_manifest(root, on_missing, on_bad_name)
    return _layout(name).load(root, on_missing, on_bad_name)
