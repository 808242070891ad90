"""Random per-modality features in the metric's sample format, shared by the metric and plot tests."""

from __future__ import annotations

import torch


def make_samples(
    seed: int = 0, n: int = 14, d: int = 8, with_sh: bool = True
) -> dict[str, torch.Tensor | None]:
    """RGBNT201-style split (every sample is query and gallery): 3 identities, 4 cameras, 2 scenes."""
    g = torch.Generator().manual_seed(seed)
    pid = torch.arange(n) % 3
    centers = torch.randn(3, 3, d, generator=g)
    sp = centers[pid] + torch.randn(n, 3, d, generator=g)
    sh = centers[pid].roll(1, dims=1) + torch.randn(n, 3, d, generator=g)
    return {
        "sp": sp,
        "sh": sh if with_sh else None,
        "present": torch.ones(n, 3, dtype=torch.bool),
        "pid": pid,
        "camid": torch.arange(n) % 4,
        "sceneid": torch.arange(n) % 2,
        "index": torch.arange(n),
        "is_query": torch.ones(n, dtype=torch.bool),
        "is_gallery": torch.ones(n, dtype=torch.bool),
    }
