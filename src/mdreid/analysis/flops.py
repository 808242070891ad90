"""FLOPs of one training step, counted and analytic, for throughput and MFU reports (scripts/bench_train.py).

Counted: torch's ``FlopCounterMode`` sees every aten matmul, convolution and attention kernel of the step,
forward and backward, and counts 2 FLOPs per multiply-add; elementwise ops (norms, activations, the
optimizer update, the losses' reductions) are not counted. On CPU, attention runs as
``_scaled_dot_product_flash_attention_for_cpu``, which torch's registry lacks (it would silently count 0), so
it is added here with torch's own SDPA formulas. Like torch, the backward of attention is counted with the
recomputed score matrix (5 matmuls, 2.5x the forward).

Analytic: the "6 x parameters x tokens" rule (forward 2 FLOPs per weight per token, backward twice that) over
the matmul weights of the encoder and heads, plus the attention score and value products (4 L N T^2 width
forward). It ignores the losses (< 0.1% here), so counted and analytic agree within a few percent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from mdreid.models.mdreid_net import MDReIDNet
from mdreid.models.openclip_tower import OpenCLIPTower
from mdreid.runtime.errors import MDReIDError

aten = torch.ops.aten


Shape = Sequence[int]


def _cpu_sdpa_flop(
    query: Shape, key: Shape, value: Shape, *args: Any, out_shape: Any = None, **kw: Any
) -> int:
    """Forward of CPU flash attention: the score and value products, like torch's CUDA kernels."""
    return sdpa_flop_count(query, key, value)


def _cpu_sdpa_backward_flop(
    grad_out: Shape, query: Shape, key: Shape, value: Shape, *args: Any, out_shape: Any = None, **kw: Any
) -> int:
    """Backward of CPU flash attention: recomputed scores plus the four gradient products."""
    return sdpa_backward_flop_count(grad_out, query, key, value)


CPU_ATTENTION_FORMULAS = {
    aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flop,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward_flop,
}


def flop_counter() -> FlopCounterMode:
    """A silent ``FlopCounterMode`` that also counts CPU attention (use as a context manager)."""
    return FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FORMULAS)


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs counted while ``fn()`` runs (e.g. forward + loss + backward of one step)."""
    with flop_counter() as counter:
        fn()
    return int(counter.get_total_flops())


@dataclass(frozen=True)
class AnalyticFlops:
    """Analytic FLOPs of one training step; ``train = 3 * forward`` (backward = 2x forward)."""

    forward: int
    attention_forward: int  # the score and value products inside ``forward``

    @property
    def train(self) -> int:
        return 3 * self.forward


def analytic_train_flops(net: MDReIDNet, triplets: int) -> AnalyticFlops:
    """The 6 x weights x tokens rule plus attention for ``triplets`` R/N/T triplets (3 images each).

    Per image: the patch embedding over the patches, every block's qkv/out/MLP weights over all tokens, the
    projection over the prefix tokens only (the MDL encoder projects just those); per triplet: the heads.
    """
    tower = net.mdl.encoder
    if not isinstance(tower, OpenCLIPTower):
        raise MDReIDError(
            f"analytic FLOPs know the open_clip ViT's weights only, not a {type(tower).__name__}"
        )
    images = 3 * triplets
    width = int(tower.transformer.width)
    layers = len(tower.transformer.resblocks)
    patches = int(tower.grid_size[0] * tower.grid_size[1])
    prefix = net.mdl.num_tokens
    tokens = prefix + patches
    block = tower.transformer.resblocks[0]
    block_weights = block.attn.in_proj_weight.numel() + block.attn.out_proj.weight.numel()
    block_weights += block.mlp.c_fc.weight.numel() + block.mlp.c_proj.weight.numel()
    head_weights = sum(
        m.weight.numel()
        for name, m in net.named_modules()
        if isinstance(m, torch.nn.Linear) and not name.startswith("mdl.")
    )
    attention = 4 * layers * images * tokens * tokens * width
    forward = (
        2 * images * patches * tower.conv1.weight.numel()
        + 2 * images * tokens * layers * block_weights
        + 2 * images * prefix * tower.proj.numel()
        + 2 * triplets * head_weights
        + attention
    )
    return AnalyticFlops(forward=forward, attention_forward=attention)
