"""Which process of a distributed run this is, for samplers that shard data themselves.

Lightning runs with ``use_distributed_sampler=False`` (its sampler replacement would break the PK sampler),
so the samplers must learn their rank and world size on their own.
"""

from __future__ import annotations

import torch.distributed as dist


def rank_and_world(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """Explicit ``rank``/``world_size`` when given, else the initialised process group's, else (0, 1)."""
    initialised = dist.is_available() and dist.is_initialized()
    if world_size is None:
        world_size = dist.get_world_size() if initialised else 1
    if rank is None:
        rank = dist.get_rank() if initialised else 0
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside a world of {world_size} processes")
    return rank, world_size
