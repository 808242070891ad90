"""The MDReID network (docs/method.md §2): shared MDL encoder over R/N/T plus the BNNeck heads of training.

Absent modalities are never encoded: the present images of all three modalities are gathered into one
batch (modality-major, like the official ``3B`` batch), encoded once, and scattered back, leaving zeros in
the absent rows. In the shared-branch concatenation a missing modality's feature is replaced by the mean
of that sample's present shared features (docs/method.md, D4, modality dropping);
with every modality present this is the official concatenation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from mdreid.modalities import MODALITIES, NUM_MODALITIES
from mdreid.models.backbone import backbone_kwargs, build_backbone
from mdreid.models.heads import BNNeckClassifier
from mdreid.models.mdl_encoder import MDLEncoder
from mdreid.models.net_output import NetOutput


def fill_absent_with_mean(feats: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """``[B,M,D]`` -> ``[B,M*D]``: absent rows replaced by the mean of the sample's present rows."""
    mask = present.unsqueeze(-1)
    mean = (feats * mask).sum(1, keepdim=True) / present.sum(1).clamp(min=1).view(-1, 1, 1).to(feats.dtype)
    return torch.where(mask, feats, mean).flatten(1)


class MDReIDNet(nn.Module):
    """Decoupled MDReID (``decoupled=True``) or the single-token baseline (``decoupled=False``).

    Parameter names for the optimiser: the CLIP tower is under ``mdl.encoder.`` (backbone LR) except
    ``mdl.encoder.positional_embedding`` (BASE_LR); ``mdl.cv_embed``, ``mdl.shared_token`` (untied only) and
    the heads (``heads_sp.*``, ``head_sh.*``; baseline ``head.*``) are outside it.
    """

    ENCODER_PREFIX = "mdl.encoder."

    def __init__(
        self,
        backbone: Mapping[str, Any],
        num_classes: int,
        num_cameras: int,
        image_size: Sequence[int],
        sie_coe: float = 1.0,
        tie_tokens: bool = True,
        decoupled: bool = True,
    ) -> None:
        super().__init__()
        tower = build_backbone(**backbone_kwargs(backbone), image_size=tuple(image_size))
        self.mdl = MDLEncoder(tower, num_cameras, sie_coe=sie_coe, tie_tokens=tie_tokens, decoupled=decoupled)
        self.decoupled = decoupled
        dim = self.mdl.out_dim
        if decoupled:
            self.heads_sp = nn.ModuleList(BNNeckClassifier(dim, num_classes) for _ in MODALITIES)
            self.head_sh = BNNeckClassifier(NUM_MODALITIES * dim, num_classes)
        else:
            self.head = BNNeckClassifier(NUM_MODALITIES * dim, num_classes)

    def extract(
        self,
        images: Mapping[str, torch.Tensor],
        present: torch.Tensor,
        camid: torch.Tensor,
        all_present: bool | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Pre-BN ``(sp [B,3,D], sh [B,3,D] or None)``, zeros where a modality is absent.

        ``images`` maps ``RGB``/``NI``/``TI`` to ``[B,3,H,W]``; a key may be left out when its ``present``
        column is all False. Every sample needs at least one present modality. ``all_present``:
        ``present.all()`` when the caller already knows it (each check is a host sync on a GPU).
        """
        present = present.bool()
        all_present = bool(present.all()) if all_present is None else all_present
        out = self._encode_all(images, camid) if all_present else self._encode_present(images, present, camid)
        return out[:, :, 0], (out[:, :, 1] if self.decoupled else None)

    def _encode_all(self, images: Mapping[str, torch.Tensor], camid: torch.Tensor) -> torch.Tensor:
        """``[B, 3, num_tokens, D]`` of batches with every modality: one concatenation, no boolean indexing
        (hence no host syncs on a GPU); the official batches take this path."""
        missing = [key for key in MODALITIES if key not in images]
        if missing:
            raise ValueError(f"modalities {missing} are marked present but missing from the images")
        tokens = self.mdl(torch.cat([images[key] for key in MODALITIES]), camid.repeat(NUM_MODALITIES))
        return tokens.unflatten(0, (NUM_MODALITIES, camid.shape[0])).transpose(0, 1)  # modality-major

    def _encode_present(
        self, images: Mapping[str, torch.Tensor], present: torch.Tensor, camid: torch.Tensor
    ) -> torch.Tensor:
        """``[B, 3, num_tokens, D]`` with zeros where absent: the present images gathered, encoded, scattered."""
        if not bool(present.any(1).all()):
            raise ValueError("every sample needs at least one present modality")
        chunks, cams = [], []
        for m, key in enumerate(MODALITIES):
            rows = present[:, m]
            if not bool(rows.any()):
                continue
            if key not in images:
                raise ValueError(f"modality {key} is marked present but missing from the images")
            chunks.append(images[key][rows])
            cams.append(camid[rows])
        tokens = self.mdl(torch.cat(chunks), torch.cat(cams))  # [num_present, num_tokens, D]
        out = tokens.new_zeros(NUM_MODALITIES, present.shape[0], *tokens.shape[1:])
        out[present.t()] = tokens  # modality-major boolean scatter matches the gather order above
        return out.transpose(0, 1)

    def forward(
        self, images: Mapping[str, torch.Tensor], present: torch.Tensor, camid: torch.Tensor
    ) -> NetOutput:
        """Features and logits for the objective (``NetOutput`` lists them per model)."""
        present = present.bool()
        all_present = bool(present.all())
        sp, sh = self.extract(images, present, camid, all_present)
        if not self.decoupled:
            feat = fill_absent_with_mean(sp, present)
            return NetOutput(decoupled=False, sp=sp, present=present, feat=feat, logits=self.head(feat))
        logits_sp = []
        for m, head in enumerate(self.heads_sp):
            if all_present:
                logits_sp.append(head(sp[:, m]))
                continue
            rows = present[:, m]
            logits = sp.new_zeros(sp.shape[0], head.classifier.out_features)
            if bool(rows.any()):
                logits = logits.index_put((rows,), head(sp[rows, m]).to(logits.dtype))
            logits_sp.append(logits)
        sh_cat = fill_absent_with_mean(sh, present)
        return NetOutput(
            decoupled=True,
            sp=sp,
            present=present,
            sh=sh,
            sh_cat=sh_cat,
            logits_sp=torch.stack(logits_sp, dim=1),
            logits_sh=self.head_sh(sh_cat),
        )
