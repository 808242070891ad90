"""FLOPs of one training step, counted and analytic, for throughput and MFU reports (scripts/bench_train.py).

Counted: torch's ``FlopCounterMode`` sees every aten matmul, convolution and attention kernel of the step,
forward and backward, and counts 2 FLOPs per multiply-add; elementwise ops (norms, activations, the
optimizer update, the losses' reductions) are not counted. On CPU, attention runs as
``_scaled_dot_product_flash_attention_for_cpu``, which torch's registry lacks (it would silently count 0), so
it is added here with torch's own SDPA formulas. Like torch, the backward of attention is counted with the
recomputed score matrix (5 matmuls, 2.5x the forward).

Analytic: the "6 x parameters x tokens" rule (forward 2 FLOPs per weight per token, backward twice that) over
the matmul weights of the tower and heads, plus the attention score and value products (4 L N T^2 width
forward). It ignores the losses (< 0.1% here), so counted and analytic agree within a few percent. It knows
no tower's internals: :func:`tower_shape` runs one image through the tower protocol's three steps and reads
which parameters enter a matrix product or convolution in each step (each such weight is applied once per
patch, per token in the blocks, or per projected prefix token) and the attention kernels' shapes (blocks,
heads x head width, and the sequence length T, registers included).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from mdreid.models.mdreid_net import MDReIDNet
from mdreid.process.errors import MDReIDError

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


# the operands of each matrix-product kernel that may be a weight
_PRODUCT_OPERANDS = {
    aten.mm.default: (0, 1),
    aten.addmm.default: (1, 2),
    aten.bmm.default: (0, 1),
    aten.baddbmm.default: (1, 2),
    aten.convolution.default: (1,),
}


class _ShapeProbe(TorchDispatchMode):
    """Records which parameters (by storage) enter a matrix product or convolution, and the query/key shapes of
    every attention kernel (any backend: CPU flash, CUDA flash, efficient, cuDNN)."""

    def __init__(self, parameters: dict[int, torch.nn.Parameter]) -> None:
        super().__init__()
        self.parameters = parameters
        self.used: set[int] = set()
        self.attention: list[tuple[tuple[int, ...], tuple[int, ...]]] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: Any = None) -> Any:
        for i in _PRODUCT_OPERANDS.get(func, ()):
            key = args[i].untyped_storage().data_ptr()
            if key in self.parameters:
                self.used.add(key)
        name = func.overloadpacket.__name__
        if "scaled_dot_product" in name and "backward" not in name:
            self.attention.append((tuple(args[0].shape), tuple(args[1].shape)))
        return func(*args, **(kwargs or {}))

    def take(self) -> int:
        """Weights (elements) of the parameters used since the last call."""
        count = sum(self.parameters[k].numel() for k in self.used)
        self.used.clear()
        return count


@dataclass(frozen=True)
class TowerShape:
    """One image through a tower, as the analytic rule needs it (read by :func:`tower_shape`)."""

    width: int  # token width (the class token's)
    patches: int  # P, from embed_patches
    prefix: int  # MDL tokens before the patches
    tokens: int  # T, the attention's sequence length: prefix + the tower's own extra tokens + P
    attention_layers: int  # attention kernels in one encode
    attention_width: int  # heads x head width
    embed_weights: int  # weights in the products of embed_patches (applied once per patch)
    block_weights: int  # ... of encode, all blocks (once per token in the blocks)
    project_weights: int  # ... of project (once per prefix token)
    attention_forward: int  # the score and value products of one image, from the kernels' shapes

    @property
    def forward(self) -> int:
        """Forward FLOPs of the tower for one image."""
        return (
            2 * self.patches * self.embed_weights
            + 2 * self.tokens * self.block_weights
            + 2 * self.prefix * self.project_weights
            + self.attention_forward
        )


def tower_shape(net: MDReIDNet, image_size: Sequence[int]) -> TowerShape:
    """Run one blank ``image_size`` image through ``net``'s tower, step by step as the MDL encoder does
    (``embed_patches``, ``encode``, ``project``), recording each step's matrix-product weights and the
    attention kernels. On the tower's device, without autograd, in training mode (the path a step takes)."""
    tower, prefix = net.mdl.encoder, net.mdl.num_tokens
    params = {p.untyped_storage().data_ptr(): p for p in tower.parameters()}
    probe = _ShapeProbe(params)
    device, training = tower.class_token.device, tower.training
    tower.train()
    try:
        with torch.no_grad(), probe:
            patches = tower.embed_patches(torch.zeros(1, 3, *image_size, device=device))
            embed = probe.take()
            prefix_tokens = tower.class_token.detach().view(1, 1, -1).expand(1, prefix, -1).to(patches.dtype)
            encoded = tower.encode(torch.cat([prefix_tokens, patches], dim=1))
            blocks = probe.take()
            tower.project(encoded[:, :prefix])
            project = probe.take()
    finally:
        tower.train(training)
    if not probe.attention:
        raise MDReIDError(
            f"analytic FLOPs: no attention kernel ran in {type(tower).__name__}.encode (attention written as "
            "plain matrix products?); the counted FLOPs still hold"
        )
    lengths = {q[-2] for q, _ in probe.attention}
    if len(lengths) != 1:
        raise MDReIDError(
            f"analytic FLOPs: attention sequence lengths differ across blocks: {sorted(lengths)}"
        )
    # query [N, heads, T, d], key [N, heads, S, d]: QK^T and AV, 2 FLOPs per multiply-add each
    attention = sum(4 * q[1] * q[2] * k[2] * q[3] for q, k in probe.attention)
    q = probe.attention[0][0]
    return TowerShape(
        width=int(tower.class_token.shape[0]),
        patches=int(patches.shape[1]),
        prefix=prefix,
        tokens=int(q[2]),
        attention_layers=len(probe.attention),
        attention_width=int(q[1] * q[3]),
        embed_weights=embed,
        block_weights=blocks,
        project_weights=project,
        attention_forward=attention,
    )


@dataclass(frozen=True)
class AnalyticFlops:
    """Analytic FLOPs of one training step; ``train = 3 * forward`` (backward = 2x forward)."""

    forward: int
    attention_forward: int  # the score and value products inside ``forward``
    tower: TowerShape

    @property
    def train(self) -> int:
        return 3 * self.forward


def analytic_train_flops(net: MDReIDNet, triplets: int, image_size: Sequence[int]) -> AnalyticFlops:
    """The 6 x weights x tokens rule plus attention for ``triplets`` R/N/T triplets (3 images each) of
    ``image_size``: the tower's share from :func:`tower_shape`, per triplet the heads' linear layers."""
    shape = tower_shape(net, image_size)
    images = 3 * triplets
    head_weights = sum(
        m.weight.numel()
        for name, m in net.named_modules()
        if isinstance(m, torch.nn.Linear) and not name.startswith("mdl.")
    )
    forward = images * shape.forward + 2 * triplets * head_weights
    return AnalyticFlops(forward=forward, attention_forward=images * shape.attention_forward, tower=shape)
