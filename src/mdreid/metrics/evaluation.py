"""One finished evaluation as a single value: the scores, and the samples they were computed from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from torch import Tensor

from mdreid.metrics.results import AnyToAnyResult


@dataclass(frozen=True)
class Evaluation:
    """``result``: every pair's numbers; ``samples``: the de-duplicated features, ids and roles behind them
    (``AnyToAnyReID.samples``, on the CPU), which the ranked lists and the t-SNE figure need."""

    result: AnyToAnyResult
    samples: Mapping[str, Tensor | None]
