"""The modality-decoupled encoder (MDL, docs/method.md §2.2-2.4): one vision transformer run on
``[specific, shared, patches]``, driven only through the tower protocol (:mod:`mdreid.models.tower`).

* Token 0 is the tower's class token (CLIP's ``class_embedding``, the modality-*specific* token) plus the
  camera embedding (SIE).
* Token 1 is the modality-*shared* token. ``tie_tokens=True`` reproduces the official code, where it is the
  very same ``nn.Parameter`` as the class token (so it appears once in ``named_parameters``);
  ``tie_tokens=False`` is the paper's reading: a separate parameter ``shared_token`` initialised from it.
* The tower's positional table gets its class row twice (rows 0 and 1), then the patch grid
  (``use_prefix_tokens(2)``).
* Only the prefix tokens are projected: the official code projects all tokens and then slices, with the
  same numbers.

``decoupled=False`` is the single-token baseline: ``[CLS + SIE, patches]`` and the tower's usual table.

Parameter names: the tower lives under ``encoder.`` (official backbone LR), while ``cv_embed`` and
``shared_token`` sit outside it (official BASE_LR), as do the positional rows by name.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mdreid.models.tower import Tower


@dataclass(frozen=True)
class MDLConfig:
    """The ``model.mdl`` section."""

    decoupled: bool = True  # false = the single-token baseline (preset model=baseline)
    tie_tokens: bool = True


class MDLEncoder(nn.Module):
    """Encodes a batch of images into ``[N, num_tokens, D]``: specific (and shared) features, pre-BN."""

    def __init__(
        self,
        tower: Tower,
        num_cameras: int,
        sie_coe: float = 1.0,
        tie_tokens: bool = True,
        decoupled: bool = True,
    ) -> None:
        super().__init__()
        if num_cameras < 1:
            raise ValueError(f"num_cameras must be >= 1, got {num_cameras}")
        if not isinstance(tower, nn.Module):
            raise TypeError(
                f"the tower must be an nn.Module (its parameters train with it), got {type(tower)}"
            )
        self.encoder = tower
        self.decoupled = decoupled
        self.num_tokens = 2 if decoupled else 1
        self.sie_coe = float(sie_coe)
        width = tower.class_token.shape[0]
        self.cv_embed = nn.Parameter(torch.empty(num_cameras, 1, width))
        nn.init.trunc_normal_(self.cv_embed, std=0.02)
        tower.use_prefix_tokens(self.num_tokens)
        self.shared_token: nn.Parameter | None = None
        if decoupled and not tie_tokens:
            self.shared_token = nn.Parameter(tower.class_token.detach().clone())

    @property
    def out_dim(self) -> int:
        return int(self.encoder.out_dim)

    def _prefix(self, camid: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``[N, num_tokens, width]`` input tokens; the camera embedding goes to token 0 only. A camera id of
        -1 marks an image without one (a camera the model never saw)."""
        n = camid.shape[0]
        cls = self.encoder.class_token.view(1, 1, -1).expand(n, 1, -1)
        camera = self.cv_embed[camid.clamp(min=0)] * (camid >= 0).view(n, 1, 1).to(self.cv_embed.dtype)
        tokens = [cls + self.sie_coe * camera]
        if self.decoupled:
            shared = self.shared_token if self.shared_token is not None else self.encoder.class_token
            tokens.append(shared.view(1, 1, -1).expand(n, 1, -1))
        return torch.cat(tokens, dim=1).to(dtype)

    def forward(self, images: torch.Tensor, camid: torch.Tensor) -> torch.Tensor:
        """``images [N,3,H,W]``, ``camid [N]`` -> ``[N, num_tokens, D]`` (token 0 specific, token 1 shared)."""
        patches = self.encoder.embed_patches(images)  # [N, P, width]
        x = self.encoder.encode(torch.cat([self._prefix(camid, patches.dtype), patches], dim=1))
        return self.encoder.project(x[:, : self.num_tokens])
