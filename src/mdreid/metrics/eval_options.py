"""The ``eval`` config section as the metric's arguments: one reading for every caller that builds the metric
(the LightningModule for train/eval, ``mdreid.score`` for saved features), so an option added to the metric
is configured the same way everywhere without touching the callers."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from mdreid.metrics.any_to_any import AnyToAnyReID
from mdreid.runtime.config_sections import reject_unknown_keys

# eval keys that configure what is written around the metric, not the metric itself
OUTPUT_KEYS: tuple[str, ...] = ("save_features",)
# metric arguments that come from the data, never from the eval section
_FROM_DATA: tuple[str, ...] = ("junk",)


def metric_keys() -> tuple[str, ...]:
    """The ``AnyToAnyReID`` constructor arguments the eval section may set (all but the data's own)."""
    params = inspect.signature(AnyToAnyReID.__init__).parameters.values()
    return tuple(
        p.name
        for p in params
        if p.name not in ("self", *_FROM_DATA) and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    )


def metric_options(evaluation: Mapping[str, Any] | None) -> dict[str, Any]:
    """The keyword arguments of ``AnyToAnyReID`` in ``evaluation`` (the ``eval`` section); a key that is
    neither a metric argument nor an output option is an error naming it."""
    values = dict(evaluation or {})
    keys = metric_keys()
    reject_unknown_keys(values, (*keys, *OUTPUT_KEYS), "eval")
    return {k: v for k, v in values.items() if k in keys}


def build_metric(evaluation: Mapping[str, Any] | None, junk: str) -> AnyToAnyReID:
    """The any-to-any metric the ``eval`` section describes, with the data's junk rule."""
    return AnyToAnyReID(junk=junk, **metric_options(evaluation))
