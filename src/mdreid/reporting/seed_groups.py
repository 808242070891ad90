"""Seeds as a distribution: a sweep's jobs grouped into configurations (their overrides but the seed), each
with mean, standard deviation and count per column, ranked by the mean; and the best configuration against
a reference as the mean difference over paired seeds with its 95% t interval (SciPy's ``ttest_rel``).

One seed is not a result: on the synthetic bench a seed moves a score by a few points, as much as most
loss-weight changes, so a sweep is read by configuration, never by its single best job.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from mdreid.process.errors import MDReIDError

SEED_KEYS = ("seed",)  # the overrides that tell repetitions of one configuration apart
CONFIDENCE = 0.95


def configuration(overrides: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The overrides that name a configuration: every one but the seed, sorted by key."""
    return tuple(sorted((k, v) for k, v in overrides.items() if k.lstrip("+~") not in SEED_KEYS))


def configuration_label(overrides: Mapping[str, str], shown: Sequence[str] | None = None) -> str:
    """``k=v, k=v`` of a configuration (only the ``shown`` keys when given); ``(defaults)`` when empty."""
    pairs = [(k, v) for k, v in configuration(overrides) if shown is None or k in shown]
    return ", ".join(f"{k}={v}" for k, v in pairs) or "(defaults)"


@dataclass(frozen=True)
class Stat:
    """Mean, sample standard deviation (None for one value) and count of one column over seeds."""

    mean: float
    std: float | None
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat | None:
        values = [v for v in values if v is not None and not math.isnan(v)]
        if not values:
            return None
        std = float(np.std(values, ddof=1)) if len(values) > 1 else None
        return cls(float(np.mean(values)), std, len(values))

    def text(self, digits: int = 2) -> str:
        spread = "" if self.std is None else f" ± {self.std:.{digits}f}"
        return f"{self.mean:.{digits}f}{spread} (n={self.n})"


@dataclass
class ConfigGroup:
    """One configuration: its overrides, and per column the value of each seed (``seed -> value``)."""

    overrides: dict[str, str]
    values: dict[str, dict[str, float]] = field(default_factory=dict)
    jobs: int = 0

    def stat(self, column: str) -> Stat | None:
        return Stat.of(list(self.values.get(column, {}).values()))


def group_jobs(
    jobs: Sequence[tuple[Mapping[str, str], str, Mapping[str, float | None]]],
) -> list[ConfigGroup]:
    """``(overrides, seed, {column: value})`` of each finished job -> configurations in first-seen order."""
    groups: dict[tuple, ConfigGroup] = {}
    for overrides, seed, columns in jobs:
        key = configuration(overrides)
        group = groups.setdefault(key, ConfigGroup(dict(key)))
        group.jobs += 1
        for column, value in columns.items():
            if value is not None and not math.isnan(value):
                group.values.setdefault(column, {})[seed] = value
    return list(groups.values())


def rank_groups(groups: list[ConfigGroup], column: str, descending: bool) -> list[ConfigGroup]:
    """Configurations by their mean of ``column`` (best first); those without a value last, in order."""

    def key(item: tuple[int, ConfigGroup]) -> tuple:
        stat = item[1].stat(column)
        if stat is None:
            return (1, 0.0, item[0])
        return (0, -stat.mean if descending else stat.mean, item[0])

    return [g for _, g in sorted(enumerate(groups), key=key)]


@dataclass(frozen=True)
class PairedDifference:
    """mean(best - reference) over the seeds both have, with its 95% t interval (None below 2 pairs)."""

    column: str
    mean: float
    low: float | None
    high: float | None
    n: int

    def text(self, digits: int = 2) -> str:
        if self.low is None or self.high is None:
            return f"{self.mean:+.{digits}f} (n={self.n}; an interval needs 2 or more paired seeds)"
        return f"{self.mean:+.{digits}f}, 95% CI [{self.low:+.{digits}f}, {self.high:+.{digits}f}] (n={self.n} paired seeds)"


def paired_difference(best: ConfigGroup, reference: ConfigGroup, column: str) -> PairedDifference | None:
    """The best configuration against the reference on ``column``, paired by seed; None without a pair."""
    a, b = best.values.get(column, {}), reference.values.get(column, {})
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    x, y = np.array([a[s] for s in seeds]), np.array([b[s] for s in seeds])
    mean = float(np.mean(x - y))
    if len(seeds) < 2:
        return PairedDifference(column, mean, None, None, 1)
    if np.allclose(x - y, mean, rtol=0, atol=1e-12):  # no spread: the t interval degenerates to the mean
        return PairedDifference(column, mean, mean, mean, len(seeds))
    from scipy import stats

    interval = stats.ttest_rel(x, y).confidence_interval(confidence_level=CONFIDENCE)
    return PairedDifference(column, mean, float(interval.low), float(interval.high), len(seeds))


def parse_reference(text: str) -> dict[str, str]:
    """``"k=v,k=v"`` (a configuration, as the table prints it with ``,`` or ``, ``) -> ``{k: v}``."""
    pairs = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in pairs if "=" not in p]
    if bad or not pairs:
        raise MDReIDError(
            f"sweep reference {text!r}: use key=value pairs separated by commas, e.g. "
            "model.loss.rol_weight=0,model.loss.kdl_weight=0"
        )
    return dict(p.split("=", 1) for p in pairs)


def find_reference(groups: Sequence[ConfigGroup], wanted: Mapping[str, str]) -> ConfigGroup:
    """The one configuration whose overrides include every ``key=value`` of ``wanted``."""
    matches = [g for g in groups if all(g.overrides.get(k) == v for k, v in wanted.items())]
    if len(matches) != 1:
        shown = "; ".join(configuration_label(g.overrides) for g in groups)
        raise MDReIDError(
            f"sweep reference {', '.join(f'{k}={v}' for k, v in wanted.items())} matches {len(matches)} "
            f"configurations; name exactly one of: {shown}"
        )
    return matches[0]
