"""The validation split: training identities held out for selecting epochs and hyper-parameters, so that no
choice is ever made on the test split unless the user asks for it (``data.val=test``).

The held-out identities are drawn with the section's own seed among the training identities that the
dataset's junk rule leaves a match for (seen by two or more cameras, or scenes under the scene rule), and
never among identities that the test split also holds. Their images form a query and a gallery the way the
dataset's test split does (``Benchmark.val_query_every``): RGBNT201, MSVR310 and manifests score every
held-out image against all the others; RGBNT100 queries one image in five of each (identity, camera) group
against all of them. The split depends on the files and the seed only, never on the device or worker count.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from mdreid.config.sections import plain, typed_section
from mdreid.data.records import Benchmark, Record
from mdreid.process.errors import MDReIDError

HOLDOUT, NONE, TEST = "holdout", "none", "test"
MODES = (HOLDOUT, NONE, TEST)


@dataclass(frozen=True)
class ValConfig:
    """The ``data.val`` section: a mapping holds identities out; ``none`` trains on all of them (no selection
    metric exists); ``test`` validates on the test split, the old way, named in every output it affects."""

    mode: str = HOLDOUT
    ids: float = 0.1  # share (0 < ids < 1) or count (a whole number >= 1) of training identities held out
    min_ids: int = 4  # a share never holds out fewer identities than this
    seed: int = 0  # the split's own seed: the held-out set does not move with the training seed

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise MDReIDError(f"data.val={self.mode!r}: use a mapping (held-out identities), none or test")
        whole = float(self.ids).is_integer()
        if not (0 < self.ids < 1 or (whole and self.ids >= 1)):
            raise MDReIDError(
                f"data.val.ids={self.ids!r}: use a share between 0 and 1 or a whole number of identities >= 1"
            )
        if self.min_ids < 1:
            raise MDReIDError(f"data.val.min_ids={self.min_ids}: use an integer >= 1")

    @classmethod
    def parse(cls, value: Any) -> ValConfig:
        """``data.val``: a mapping of ``ids``, ``min_ids``, ``seed`` (or ``holdout`` for the defaults); ``none``
        or null; or ``test``."""
        value = plain(value)
        if value is None or (isinstance(value, str) and value.lower() == NONE):
            return cls(mode=NONE)
        if isinstance(value, str):
            return cls(mode=value.lower())  # "holdout" takes the defaults
        if isinstance(value, ValConfig):
            return value
        if not isinstance(value, Mapping):
            raise MDReIDError(f"data.val={value!r}: use a mapping (held-out identities), none or test")
        return typed_section(cls, value, "data.val", fixed={"mode": HOLDOUT})

    def count(self, available: int) -> int:
        """How many identities to hold out of ``available`` training identities."""
        if self.ids >= 1:
            return int(self.ids)
        return max(self.min_ids, math.floor(self.ids * available + 0.5))

    def describe(self) -> str:
        if self.mode == NONE:
            return "none: every training identity is trained on; no selection metric"
        if self.mode == TEST:
            return "TEST split (data.val=test): val/* metrics and any selection on them are test-derived"
        return f"held-out training identities (ids={self.ids:g}, min_ids={self.min_ids}, seed={self.seed})"

    def plain(self) -> str | dict[str, Any]:
        """The config form: ``none``, ``test`` or the mapping."""
        if self.mode != HOLDOUT:
            return self.mode
        return {"ids": self.ids, "min_ids": self.min_ids, "seed": self.seed}


def _matchable(records: list[Record], junk_rule: str) -> list[int]:
    """Sorted raw pids whose images the junk rule leaves a true match for (two cameras, or two scenes)."""
    views: dict[int, set[int]] = defaultdict(set)
    for r in records:
        views[r.pid].add(r.sceneid if junk_rule == "scene" else r.camid)
    return sorted(pid for pid, seen in views.items() if len(seen) > 1)


def _relabel(records: list[Record]) -> list[Record]:
    """Training records with labels 0..C-1 by sorted raw pid (what every reader does for its train split)."""
    labels = {pid: i for i, pid in enumerate(sorted({r.pid for r in records}))}
    return [replace(r, label=labels[r.pid]) for r in records]


def _listing(records: list[Record]) -> list[Record]:
    """Held-out records as an evaluation listing of their own: split ``val``, no label, renumbered."""
    return [replace(r, split="val", label=-1, index=i) for i, r in enumerate(records)]


def _queries(gallery: list[Record], every: int, seed: int) -> list[Record]:
    """One image in ``every`` (at least one) of each (identity, camera) group, drawn with ``seed``."""
    groups: dict[tuple[int, int], list[Record]] = defaultdict(list)
    for r in gallery:
        groups[(r.pid, r.camid)].append(r)
    rng = np.random.default_rng([seed, 0x0051])
    chosen = set()
    for key in sorted(groups):
        members = groups[key]
        take = max(1, len(members) // every)
        chosen.update(r.index for r in (members[i] for i in sorted(rng.choice(len(members), take, False))))
    return [replace(r, index=i) for i, r in enumerate(r for r in gallery if r.index in chosen)]


def _hold_out(bench: Benchmark, cfg: ValConfig) -> Benchmark:
    test_pids = {r.pid for r in (*bench.query, *bench.gallery)}
    candidates = [p for p in _matchable(bench.train, bench.junk_rule) if p not in test_pids]
    total = len({r.pid for r in bench.train})
    wanted = cfg.count(total)
    view = "scenes" if bench.junk_rule == "scene" else "cameras"
    if wanted > len(candidates) or wanted > total - 2:
        raise MDReIDError(
            f"data.val holds out {wanted} of {total} training identities, but only {len(candidates)} are seen "
            f"by two or more {view} (a validation query needs a match the junk rule keeps) and training needs "
            "at least 2 identities left; lower data.val.ids, or train on every identity with data.val=none"
        )
    rng = np.random.default_rng([cfg.seed, 0x0A11])
    held = {candidates[i] for i in rng.choice(len(candidates), wanted, replace=False)}
    gallery = _listing([r for r in bench.train if r.pid in held])
    query = gallery if bench.val_query_every == 1 else _queries(gallery, bench.val_query_every, cfg.seed)
    val = Benchmark(bench.name, bench.root, query=query, gallery=gallery, junk_rule=bench.junk_rule)
    train = _relabel([r for r in bench.train if r.pid not in held])
    return replace(bench, train=train, val=val)


def split_validation(bench: Benchmark, cfg: ValConfig) -> Benchmark:
    """``bench`` with its validation split set by ``cfg`` (training identities held out and relabelled), the
    test split as it was. A reader's own validation split (a manifest's ``val`` rows) is used as it is, or
    trained on with ``data.val=none``."""
    if cfg.mode == TEST:
        return replace(
            bench,
            val=Benchmark(
                bench.name, bench.root, query=bench.query, gallery=bench.gallery, junk_rule=bench.junk_rule
            ),
        )
    if bench.val is not None:
        if cfg.mode == HOLDOUT:
            return bench
        joined = [replace(r, split="train") for r in bench.val.gallery]
        return replace(bench, train=_relabel([*bench.train, *joined]), val=None)
    if cfg.mode == NONE:
        return bench
    return _hold_out(bench, cfg)
