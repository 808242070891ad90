"""Representation Orthogonality Loss, ROL (docs/method.md §3.3), vectorised over the batch with ``bmm``.

Per sample, ``M = [sp_R; sp_N; sp_T; sh_R; sh_N; sh_T]`` (6 rows) and the cosine matrix ``S`` is pushed
towards the block target ``A = [[I_3, 0], [0, 1_3x3]]``:

* ``order=2`` (official code, default): rows of ``S`` are L2-normalised again with eps 1e-6 inside the
  square root (``featureL2Norm``) and ``G = S' S'^T`` is compared with ``A``;
* ``order=1`` (the paper's Eq. 13): ``S`` itself is compared with ``A``.

Both orders use the official normalisation: the squared error summed over the matrix, divided by
``K^2`` (36 with all modalities), averaged over the batch, so ``rol_weight`` keeps its meaning.

Missing modalities: only the ``K = 2 x #present`` rows of present modalities take part, against the
matching sub-block of ``A``, normalised by ``K^2``. Absent rows are zeroed before the cosine, so they add
nothing to the second-order row norms either: the result equals the sub-block computation exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rol_target(num_modalities: int = 3, device: torch.device | None = None) -> torch.Tensor:
    """The ``2M x 2M`` target: identity on the specific block, ones on the shared block, zeros elsewhere."""
    m = num_modalities
    target = torch.zeros(2 * m, 2 * m, device=device)
    target[:m, :m] = torch.eye(m, device=device)
    target[m:, m:] = 1.0
    return target


def representation_orthogonality_loss(
    sp: torch.Tensor, sh: torch.Tensor, present: torch.Tensor | None = None, order: int = 2
) -> torch.Tensor:
    """ROL of ``sp, sh [B,M,D]`` with an optional ``present [B,M]`` mask; computed in fp32."""
    if order not in (1, 2):
        raise ValueError(f"ROL order must be 1 or 2, got {order}")
    feats = torch.cat([sp, sh], dim=1).float()  # [B, 2M, D]
    batch, rows, _ = feats.shape
    mask = torch.ones(batch, rows, dtype=torch.bool, device=feats.device)
    if present is not None:
        mask = torch.cat([present, present], dim=1).bool()
    unit = F.normalize(feats, dim=-1) * mask.unsqueeze(-1)
    sim = torch.bmm(unit, unit.transpose(1, 2))
    if order == 2:
        sim = sim / (sim.pow(2).sum(-1, keepdim=True) + 1e-6).sqrt()
        sim = torch.bmm(sim, sim.transpose(1, 2))
    pair = (mask.unsqueeze(2) & mask.unsqueeze(1)).float()
    err = (sim - rol_target(rows // 2, feats.device)).pow(2) * pair
    k = mask.sum(1).float()
    return (err.sum((1, 2)) / k.pow(2)).mean()
