"""The pretraining objective: supervised contrastive learning (multi-positive InfoNCE) on P x K batches.

Why this objective: it is CLIP's own contrastive loss with identity labels deciding the positives. It needs
no per-identity weights, so it learns from the first step however many identities the pool has (an ID
classifier over 2,000 identities stayed at chance for 600 steps on this pool), and its temperature-scaled
softmax over every negative of the batch spreads the features over the sphere instead of collapsing them,
which is what a foundation must hand to the batch-hard triplet. The features are the tower's pooled,
projected output: the token MDReID's specific branch starts from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from mdreid.config.sections import plain, typed_section
from mdreid.models.backbone import backbone_config, backbone_kwargs, build_backbone
from mdreid.process.errors import MDReIDError


def supervised_contrastive(
    features: torch.Tensor, labels: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over anchors of -mean log p(positive) under a softmax over every other item of the batch, and
    the share of anchors whose nearest other item is a positive (a running retrieval top-1)."""
    z = F.normalize(features.float(), dim=1)
    sim = z @ z.T / temperature
    self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, float("-inf"))
    positive = (labels[:, None] == labels[None, :]) & ~self_mask
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    per_anchor = -(log_prob.masked_fill(~positive, 0.0).sum(1) / positive.sum(1).clamp(min=1))
    valid = positive.any(1)
    loss = per_anchor[valid].mean() if bool(valid.any()) else sim.new_zeros(())
    top1 = positive[torch.arange(len(z), device=z.device), sim.argmax(1)].float().mean()
    return loss, top1


@dataclass(frozen=True)
class ContrastiveOptim:
    """The pretrain config's ``optim`` section."""

    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    temperature: float = 0.1  # of the supervised contrastive softmax


class ProxyPretrainModule(L.LightningModule):
    """The tower trained with ``supervised_contrastive``; ``backbone`` and ``optim`` are the pretrain config's
    sections as plain values (so a checkpoint holds data only), read here as typed dataclasses."""

    def __init__(
        self, backbone: Mapping[str, Any], image_size: int, optim: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__()
        self.save_hyperparameters(
            {"backbone": plain(backbone), "image_size": image_size, "optim": plain(optim)}
        )
        tower = backbone_config(backbone, "backbone")
        if tower.weights:
            raise MDReIDError(
                "backbone.weights must be null: the proxy foundation is trained from a random tower"
            )
        self.optim_cfg = typed_section(ContrastiveOptim, plain(optim), "optim")
        self.visual = build_backbone(**backbone_kwargs(tower), image_size=(image_size, image_size))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch
        loss, top1 = supervised_contrastive(self.visual(images), labels, self.optim_cfg.temperature)
        self.log_dict(
            {"pretrain/loss": loss, "pretrain/top1": top1}, prog_bar=True, on_step=True, on_epoch=True
        )
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW with decay on matrices only, linear warmup then cosine decay, stepped per batch."""
        decay = [p for n, p in self.named_parameters() if p.ndim >= 2 and "positional" not in n]
        rest = [p for n, p in self.named_parameters() if not (p.ndim >= 2 and "positional" not in n)]
        opt = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": self.optim_cfg.weight_decay},
                {"params": rest, "weight_decay": 0.0},
            ],
            lr=self.optim_cfg.lr,
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = min(total - 1, int(self.optim_cfg.warmup_epochs * total / max(1, self.trainer.max_epochs)))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

        schedule = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def visual_state_dict(self) -> dict[str, torch.Tensor]:
        """The tower's weights as open_clip's ``VisionTransformer`` names them."""
        return {k: v.detach().float().cpu() for k, v in self.visual.state_dict().items()}
