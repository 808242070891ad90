"""BNNeck + identity classifier (docs/method.md §2.5): the training-only head on top of a pre-BN feature."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BNNeckClassifier(nn.Module):
    """``Linear(BatchNorm1d(feat))`` with a frozen zero BN bias and a bias-free classifier.

    The frozen bias and the normal(std=0.001) classifier follow the official BNNeck. The BN sees only the
    rows it is given, so callers pass the present samples only. With a single row in training (possible
    under random modality dropping) batch statistics are undefined: the running statistics are used instead.
    """

    def __init__(self, in_dim: int, num_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(in_dim)
        nn.init.ones_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)
        self.bn.bias.requires_grad_(False)
        self.classifier = nn.Linear(in_dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        if self.training and feat.shape[0] == 1:
            bn = self.bn
            normed = F.batch_norm(
                feat, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps
            )
        else:
            normed = self.bn(feat)
        return self.classifier(normed)
