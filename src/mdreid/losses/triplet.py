"""Soft-margin batch-hard triplet loss (docs/method.md §3.2; the official ``TripletLoss``, ``NO_MARGIN``).

Distances are Euclidean on un-normalised features, ``sqrt(clamp(|a|^2 + |b|^2 - 2ab, 1e-12))``. For each
anchor the hardest positive (max distance, the anchor itself included, as officially) and the hardest
negative (min distance) are mined with masks rather than the official fixed-width reshape, which gives the
same values on PK batches and also works when modality dropping leaves uneven identity counts. Anchors
without any negative in the batch have ``d_an = inf`` and are left out of the loss.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class TripletResult(NamedTuple):
    loss: torch.Tensor
    d_ap: torch.Tensor  # [N] hardest-positive distance per anchor
    d_an: torch.Tensor  # [N] hardest-negative distance per anchor (inf when the anchor has no negative)


def euclidean_dist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``[M,D] x [N,D] -> [M,N]`` Euclidean distances, clamped like the official code (grad-safe at 0)."""
    sq = x.pow(2).sum(1, keepdim=True) + y.pow(2).sum(1, keepdim=True).t() - 2.0 * x @ y.t()
    return sq.clamp(min=1e-12).sqrt()


def hard_example_mining(dist: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-anchor hardest positive and hardest negative distances of a square distance matrix."""
    same = labels.view(-1, 1) == labels.view(1, -1)
    d_ap = dist.masked_fill(~same, float("-inf")).max(1).values
    d_an = dist.masked_fill(same, float("inf")).min(1).values
    return d_ap, d_an


def batch_hard_triplet(feats: torch.Tensor, labels: torch.Tensor) -> TripletResult:
    """``mean softplus(d_ap - d_an)`` = ``SoftMarginLoss(d_an - d_ap, 1)``, computed in fp32."""
    d_ap, d_an = hard_example_mining(euclidean_dist(feats.float(), feats.float()), labels)
    valid = torch.isfinite(d_an)
    # a masked mean instead of indexing: no host sync; softplus(d_ap - inf) = 0 with a zero gradient
    loss = (F.softplus(d_ap - d_an) * valid).sum() / valid.sum().clamp(min=1)
    return TripletResult(loss, d_ap, d_an)
