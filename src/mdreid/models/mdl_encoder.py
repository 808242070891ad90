"""The modality-decoupled encoder (MDL, docs/method.md §2.2-2.4): one CLIP ViT run on
``[specific, shared, patches]``.

* Token 0 is CLIP's ``class_embedding`` (the modality-*specific* token) plus the camera embedding (SIE).
* Token 1 is the modality-*shared* token. ``tie_tokens=True`` reproduces the official code, where it is the
  very same ``nn.Parameter`` as ``class_embedding`` (so it appears once in ``named_parameters``);
  ``tie_tokens=False`` is the paper's reading: a separate parameter ``shared_token`` initialised from it.
* The positional table gets CLIP's class row twice (rows 0 and 1), then the patch grid. It replaces the
  tower's ``positional_embedding`` in place, so the parameter keeps CLIP's name.
* ``ln_pre`` -> blocks -> ``ln_post`` -> ``proj``. Both are per-token maps, so applying them to the prefix
  tokens only gives exactly the official numbers (which apply them to all tokens and then slice).

``decoupled=False`` is the single-token baseline: ``[CLS + SIE, patches]`` and the usual CLIP table.

Parameter names: the CLIP tower lives under ``encoder.`` (official backbone LR), while ``cv_embed`` and
``shared_token`` sit outside it (official BASE_LR), as do the positional rows by name.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from open_clip.transformer import VisionTransformer
from torch import nn


@dataclass(frozen=True)
class MDLConfig:
    """The ``model.mdl`` section."""

    decoupled: bool = True  # false = the single-token baseline (preset model=baseline)
    tie_tokens: bool = True


class MDLEncoder(nn.Module):
    """Encodes a batch of images into ``[N, num_tokens, D]``: specific (and shared) features, pre-BN."""

    def __init__(
        self,
        encoder: VisionTransformer,
        num_cameras: int,
        sie_coe: float = 1.0,
        tie_tokens: bool = True,
        decoupled: bool = True,
    ) -> None:
        super().__init__()
        if num_cameras < 1:
            raise ValueError(f"num_cameras must be >= 1, got {num_cameras}")
        self.encoder = encoder
        self.decoupled = decoupled
        self.num_tokens = 2 if decoupled else 1
        self.sie_coe = float(sie_coe)
        width = encoder.class_embedding.shape[0]
        self.cv_embed = nn.Parameter(torch.empty(num_cameras, 1, width))
        nn.init.trunc_normal_(self.cv_embed, std=0.02)
        self.shared_token: nn.Parameter | None = None
        if decoupled:
            table = encoder.positional_embedding.detach()
            encoder.positional_embedding = nn.Parameter(
                torch.cat([table[:1], table[:1], table[1:]], dim=0).clone()
            )
            if not tie_tokens:
                self.shared_token = nn.Parameter(encoder.class_embedding.detach().clone())

    @property
    def out_dim(self) -> int:
        return int(self.encoder.output_dim)

    def _prefix(self, camid: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``[N, num_tokens, width]`` input tokens; the camera embedding goes to token 0 only. A camera id of
        -1 marks an image without one (a camera the model never saw)."""
        n = camid.shape[0]
        cls = self.encoder.class_embedding.view(1, 1, -1).expand(n, 1, -1)
        camera = self.cv_embed[camid.clamp(min=0)] * (camid >= 0).view(n, 1, 1).to(self.cv_embed.dtype)
        tokens = [cls + self.sie_coe * camera]
        if self.decoupled:
            shared = self.shared_token if self.shared_token is not None else self.encoder.class_embedding
            tokens.append(shared.view(1, 1, -1).expand(n, 1, -1))
        return torch.cat(tokens, dim=1).to(dtype)

    def forward(self, images: torch.Tensor, camid: torch.Tensor) -> torch.Tensor:
        """``images [N,3,H,W]``, ``camid [N]`` -> ``[N, num_tokens, D]`` (token 0 specific, token 1 shared)."""
        enc = self.encoder
        patches = enc.conv1(images).flatten(2).transpose(1, 2)  # [N, grid_h*grid_w, width]
        x = torch.cat([self._prefix(camid, patches.dtype), patches], dim=1)
        x = enc.ln_pre(x + enc.positional_embedding.to(x.dtype))
        x = enc.transformer(x)
        return enc.ln_post(x[:, : self.num_tokens]) @ enc.proj
