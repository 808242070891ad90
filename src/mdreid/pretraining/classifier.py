"""The pretraining objective: identity classification over the whole pool with a cosine classifier.

Why this objective: ID classification over thousands of identities is the ReID field's standard way to learn
an embedding in which identities separate, and a cosine (normalised-softmax) classifier gives every identity
its own direction on the sphere, so features spread out instead of collapsing, which is what a foundation
must hand to the batch-hard triplet. It needs no pair mining and no large batches, so it suits 2 CPU cores.
The features are the tower's pooled, projected output: the token MDReID's specific branch starts from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from mdreid.models.backbone import backbone_kwargs, build_backbone


class ProxyPretrainModule(L.LightningModule):
    def __init__(
        self,
        backbone: Mapping[str, Any],
        image_size: int,
        num_classes: int,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_epochs: float = 1.0,
        scale: float = 16.0,
        label_smoothing: float = 0.1,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        kwargs = backbone_kwargs(backbone)
        kwargs["weights"] = None  # the proxy foundation starts from a random tower, as CLIP did
        self.visual = build_backbone(**kwargs, image_size=(image_size, image_size))
        dim = self.visual.output_dim
        self.classifier = nn.Parameter(torch.randn(num_classes, dim) / math.sqrt(dim))

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        features = F.normalize(self.visual(images), dim=1)
        return self.hparams.scale * features @ F.normalize(self.classifier, dim=1).T

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch
        logits = self.logits(images)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.hparams.label_smoothing)
        acc = (logits.argmax(1) == labels).float().mean()
        self.log_dict(
            {"pretrain/loss": loss, "pretrain/acc": acc}, prog_bar=True, on_step=True, on_epoch=True
        )
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW with decay on matrices only, linear warmup then cosine decay, stepped per batch."""
        decay = [p for n, p in self.named_parameters() if p.ndim >= 2 and "positional" not in n]
        rest = [p for n, p in self.named_parameters() if not (p.ndim >= 2 and "positional" not in n)]
        opt = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": self.hparams.weight_decay},
                {"params": rest, "weight_decay": 0.0},
            ],
            lr=self.hparams.lr,
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = min(total - 1, int(self.hparams.warmup_epochs * total / max(1, self.trainer.max_epochs)))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

        schedule = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def visual_state_dict(self) -> dict[str, torch.Tensor]:
        """The tower's weights as open_clip's ``VisionTransformer`` names them."""
        return {k: v.detach().float().cpu() for k, v in self.visual.state_dict().items()}
