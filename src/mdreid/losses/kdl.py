"""Knowledge Discrepancy Loss, KDL (docs/method.md §3.4), as the official ``EnhancedTripletLoss`` has it.

Three feature sets per sample: ``f_ss = [sp_R, sh_R, sp_N, sh_N, sp_T, sh_T]`` (gradient flows),
``f_sp = [sp_R, sp_N, sp_T]`` and ``f_sh = [sh_R, sh_N, sh_T]`` (both **detached**, official scope). Each
gets batch-hard distances, reduced to batch-level scalars ``P = max_a d_ap`` and ``N = min_a d_an``;
``D_p = P_ss / (P_ss + P_sp + P_sh)``, ``D_n = N_ss / (N_ss + N_sp + N_sh)`` and the loss is
``|D_p - 0| + |D_n - 1|``. Computed in fp32.

Missing modalities: the three sets are only comparable over the same modalities, so KDL uses the samples
whose three modalities are all present (the whole batch in the official recipe). With no such sample,
or no negative pair among them, it is 0.
"""

from __future__ import annotations

import torch

from mdreid.losses.triplet import euclidean_dist, hard_example_mining


def _extremes(feats: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch-level hardest-positive maximum and hardest-negative minimum."""
    d_ap, d_an = hard_example_mining(euclidean_dist(feats, feats), labels)
    return d_ap.max(), d_an.min()


def knowledge_discrepancy_loss(
    sp: torch.Tensor, sh: torch.Tensor, labels: torch.Tensor, present: torch.Tensor | None = None
) -> torch.Tensor:
    """KDL of ``sp, sh [B,M,D]`` with labels ``[B]`` and an optional ``present [B,M]`` mask."""
    sp, sh = sp.float(), sh.float()
    if present is not None:
        complete = present.bool().all(1)
        sp, sh, labels = sp[complete], sh[complete], labels[complete]
    batch = sp.shape[0]
    zero = (sp.sum() + sh.sum()) * 0.0  # keeps the graph (and DDP's used-parameter set) intact
    if batch == 0:
        return zero
    f_ss = torch.stack([sp, sh], dim=2).reshape(batch, -1)
    p_ss, n_ss = _extremes(f_ss, labels)
    p_sp, n_sp = _extremes(sp.detach().reshape(batch, -1), labels)
    p_sh, n_sh = _extremes(sh.detach().reshape(batch, -1), labels)
    # no negative pair in the batch (n = inf): the loss is 0; decided on the device, without a host sync,
    # and with finite stand-ins so the unused branch cannot put NaN into the gradient
    has_negative = torch.isfinite(n_ss)
    n_ss, n_sp, n_sh = (torch.where(has_negative, n, torch.ones_like(n)) for n in (n_ss, n_sp, n_sh))
    d_p = p_ss / (p_ss + p_sp + p_sh)
    d_n = n_ss / (n_ss + n_sp + n_sh)
    return torch.where(has_negative, d_p.abs() + (d_n - 1.0).abs(), zero)
