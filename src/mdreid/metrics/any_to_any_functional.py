"""The functional form of the any-to-any metric, as torchmetrics pairs every Metric class with a function:
all the samples at once in, every configured query/gallery modality pair scored out."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mdreid.metrics.any_to_any import AnyToAnyReID
from mdreid.metrics.pair_selection import PairSelection
from mdreid.metrics.results import AnyToAnyResult


def any_to_any_reid(
    sp: Tensor | None,
    sh: Tensor | None,
    present: Tensor,
    pid: Tensor,
    camid: Tensor,
    is_query: Tensor,
    is_gallery: Tensor,
    sceneid: Tensor | None = None,
    pairs: PairSelection | str | Sequence = "all",
    similarity: str = "code",
    junk: str = "camera",
    max_rank: int = 50,
) -> AnyToAnyResult:
    """mAP, CMC and mINP of every query/gallery modality-subset pair from per-modality features.

    ``sp`` / ``sh``: ``[N, 3, D]`` specific and shared features in R, N, T order (either may be None);
    ``present``: ``[N, 3]`` which modalities each sample has; ``is_query`` / ``is_gallery``: ``[N]`` roles (a
    sample may be both, as in RGBNT201). ``junk`` is ``camera`` (same identity and camera) or ``scene``
    (MSVR310: same identity and scene, from ``sceneid``). The same checks and numbers as
    :class:`~mdreid.metrics.AnyToAnyReID`, which this runs in one update.
    """
    n = present.shape[0]
    metric = AnyToAnyReID(pairs=pairs, similarity=similarity, junk=junk, max_rank=max_rank)
    metric.update(
        sp=sp,
        sh=sh,
        present=present,
        pid=pid,
        camid=camid,
        sceneid=sceneid if sceneid is not None else torch.full((n,), -1, dtype=torch.long),
        index=torch.arange(n),
        is_query=is_query,
        is_gallery=is_gallery,
    )
    return metric.compute()
