"""The ``eval`` config section as the metric's arguments: one reading for every caller that builds the metric
(the LightningModule for train/eval, ``mdreid.score`` for saved features), so an argument added to the metric
is configurable as ``eval.<name>`` everywhere without touching the callers.

The section also holds keys for other consumers (``save_features`` for the results callback, and whatever
the entry points read themselves), so only the metric's own arguments are taken from it.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from mdreid.metrics.any_to_any import AnyToAnyReID

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
    """The keyword arguments of ``AnyToAnyReID`` that ``evaluation`` (the ``eval`` section) sets."""
    keys = metric_keys()
    return {k: v for k, v in dict(evaluation or {}).items() if k in keys}


def build_metric(evaluation: Mapping[str, Any] | None, junk: str) -> AnyToAnyReID:
    """The any-to-any metric the ``eval`` section describes, with the data's junk rule."""
    return AnyToAnyReID(junk=junk, **metric_options(evaluation))
