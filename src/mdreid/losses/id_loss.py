"""Label-smoothed identity loss (docs/method.md §3.1, the official ``CrossEntropyLabelSmooth``).

The official targets are ``(1-eps)*onehot + eps/C`` with ``mean_batch(sum_c -t_c log p_c)``; torch's
``cross_entropy(label_smoothing=eps)`` builds exactly that target, so it is used directly (in fp32).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def id_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.1) -> torch.Tensor:
    """Mean label-smoothed cross-entropy of ``logits [N,C]`` against ``labels [N]``."""
    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
