"""The deployable half of MDReID: one modality's images and camera ids in, its pre-BN features out.

R, N and T share one encoder (the modality only decides which images go in), so a single extractor, and a
single exported graph, serves all three. Its outputs are exactly the rows ``MDReIDNet.extract`` returns for
a modality, computed without the gather/scatter over present modalities, whose data-dependent shapes an
export cannot keep. Scoring (concatenation, normalisation) stays outside, as in ``AnyToAnyReID``.
"""

from __future__ import annotations

import torch
from torch import nn

from mdreid.models.mdreid_net import MDReIDNet


class FeatureExtractor(nn.Module):
    """``(image [B,3,H,W], camid [B] long) -> (sp [B,D], sh [B,D])``; the baseline returns ``(sp,)``.

    Holds the network's encoder (not a copy), so it sees the same weights; the training heads are left out.
    """

    def __init__(self, net: MDReIDNet) -> None:
        super().__init__()
        self.mdl = net.mdl

    @property
    def output_names(self) -> tuple[str, ...]:
        """``sp`` (token 0, specific; the baseline's only feature) and, when decoupled, ``sh`` (token 1)."""
        return ("sp", "sh")[: self.mdl.num_tokens]

    def forward(self, image: torch.Tensor, camid: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.mdl(image, camid).unbind(1)
