"""Unpadded, contiguous evaluation shards: every evaluation item is seen by exactly one rank, once.

``DistributedSampler`` pads by repeating items so that ranks get equal counts, which double-counts those
queries unless the metric de-duplicates; this sampler never repeats (ranks may differ by a few items,
which is safe because the metric gathers its states once at the end, not per step).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from torch.utils.data import Sampler

from mdreid.data.dist_ranks import rank_and_world


class ShardSampler(Sampler[int]):
    """Rank r gets ``[r * ceil(N / W), min(N, (r + 1) * ceil(N / W)))`` in order."""

    def __init__(self, num_samples: int, rank: int | None = None, world_size: int | None = None) -> None:
        self.rank, self.world_size = rank_and_world(rank, world_size)
        per_rank = math.ceil(num_samples / self.world_size)
        self.start = min(num_samples, self.rank * per_rank)
        self.stop = min(num_samples, self.start + per_rank)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start
