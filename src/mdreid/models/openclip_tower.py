"""open_clip's ``VisionTransformer`` as a tower (:mod:`mdreid.models.tower`): the one place that knows its
attributes.

The adapter takes over the open_clip module's submodules and parameters under their own names instead of
wrapping it, so a state dict reads exactly as open_clip's (``conv1.weight``, ``class_embedding``,
``positional_embedding``, ``transformer.resblocks.0...``): CLIP weight files, checkpoints, the official
layout and the LR rules by name are all unaffected. The operations are open_clip's own forward, split where
the MDL encoder inserts its prefix tokens; ``ln_post`` and ``proj`` are per-token maps, so applying them to
the prefix tokens only gives the numbers of applying them to all tokens and then slicing.
"""

from __future__ import annotations

import torch
from open_clip.transformer import VisionTransformer
from torch import nn

from mdreid.process.errors import MDReIDError


class OpenCLIPTower(nn.Module):
    """A class-token open_clip ViT driven through the tower protocol (positions, ``ln_pre``, blocks,
    ``ln_post``, ``proj``); patch dropout and attention pooling have no place in it and are refused."""

    def __init__(self, visual: VisionTransformer) -> None:
        super().__init__()
        if visual.attn_pool is not None or visual.pool_type != "tok" or visual.proj is None:
            raise MDReIDError(
                "model.backbone: the MDL encoder needs a ViT pooled by its class token with a projection; "
                "this open_clip config pools otherwise (attentional or average pooling): use e.g. ViT-B-16"
            )
        if not isinstance(visual.patch_dropout, nn.Identity):
            raise MDReIDError(
                "model.backbone: the MDL encoder does not drop patches; use a config without it"
            )
        for name, module in visual.named_children():
            self.add_module(name, module)
        for name, param in visual.named_parameters(recurse=False):
            self.register_parameter(name, param)
        self.grid_size = tuple(visual.grid_size)
        self.out_dim = int(visual.output_dim)

    @property
    def class_token(self) -> nn.Parameter:
        return self.class_embedding

    def use_prefix_tokens(self, count: int) -> None:
        """Repeat the class row of the positional table ``count`` times (the official decoupled table has it
        at rows 0 and 1); the table keeps its name, so CLIP's parameter name and LR rule still apply."""
        trainable, table = self.positional_embedding.requires_grad, self.positional_embedding.detach()
        prefix = table.shape[0] - self.grid_size[0] * self.grid_size[1]
        if count == prefix:
            return
        if prefix != 1 or count < 1:
            raise ValueError(f"the positional table already has {prefix} prefix rows; cannot make it {count}")
        rows = torch.cat([table[:1]] * count + [table[1:]], dim=0)
        self.positional_embedding = nn.Parameter(rows, requires_grad=trainable)

    def embed_patches(self, images: torch.Tensor) -> torch.Tensor:
        return self.conv1(images).flatten(2).transpose(1, 2)  # [N, grid_h*grid_w, width]

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.transformer(self.ln_pre(tokens + self.positional_embedding.to(tokens.dtype)))

    def project(self, prefix: torch.Tensor) -> torch.Tensor:
        return self.ln_post(prefix) @ self.proj
