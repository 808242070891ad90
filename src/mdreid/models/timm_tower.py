"""A timm vision transformer as a tower (:mod:`mdreid.models.tower`): DINOv2 (``VisionTransformer``, with or
without register tokens), DINOv3 and EVA-02 (``Eva``, rotary positions), and open_clip's timm trunks
(SigLIP), built by :mod:`mdreid.models.timm_build`.

The tower takes over the timm model's embedding, blocks and final norms under timm's names, so its forward
is timm's own, split where the MDL encoder inserts its prefix tokens. Token layout inside ``encode``
(docs/method.md, "Token layout of the towers"):

    [MDL prefix tokens (count), register tokens (R), patch tokens (P)]

which is timm's ``[class, registers, patches]`` with the class slot widened to the MDL prefix. The
registers' outputs are dropped after the blocks. Positions: a table with a class row (plain DINOv2, EVA-02)
gives every prefix token that row; a table without one (DINOv2 with registers, SigLIP) adds positions to
the patches only; rotary embeddings (DINOv3, EVA-02) rotate the patches only, so every attention block is
told the new prefix length. The position table is named ``positional_embedding`` (timm: ``pos_embed``) so
that it learns at the base LR like CLIP's.

Images arrive normalised as the data pipeline does it (mean = std = 0.5); ``mean``/``std`` are the
statistics the weights were trained with (ImageNet for DINOv2/v3), and the tower converts exactly (one
per-channel affine map) before the patch embedding. ``pad_to_patch`` zero-pads the right and bottom edges
to a multiple of the patch size (timm's ``dynamic_img_pad``), e.g. 256x128 -> 266x140 for patch 14.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mdreid.data.transforms import MEAN as PIPELINE_MEAN
from mdreid.data.transforms import STD as PIPELINE_STD
from mdreid.models import timm_build
from mdreid.models.tower_registry import register_tower
from mdreid.process.errors import MDReIDError

# timm submodules the tower runs, in forward order (absent ones are skipped)
_RUN = ("patch_embed", "pos_drop", "norm_pre", "blocks", "norm", "fc_norm", "rope")


def _padded(image_size: Sequence[int], patch: tuple[int, int], pad: bool) -> tuple[int, int]:
    """The input size the timm model is built for: the image size, or the next multiple of the patch."""
    h, w = int(image_size[0]), int(image_size[1])
    if not pad and (h % patch[0] or w % patch[1]):
        ph, pw = h // patch[0] * patch[0], w // patch[1] * patch[1]
        raise MDReIDError(
            f"data.image_size={[h, w]} is not a multiple of the patch size {list(patch)}; use "
            f"data.image_size=[{ph},{pw}], or model.backbone.pad_to_patch=true to zero-pad the right and bottom "
            "edges as timm's dynamic_img_pad does"
        )
    return -(-h // patch[0]) * patch[0], -(-w // patch[1]) * patch[1]


def _check_stats(key: str, values: Sequence[float] | None) -> tuple[float, float, float] | None:
    if values is None:
        return None
    if len(values) != 3 or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        raise MDReIDError(f"model.backbone.{key}={list(values)}: give three numbers (R, G, B) or null")
    if key == "std" and min(values) <= 0:
        raise MDReIDError(f"model.backbone.std={list(values)}: every value must be positive")
    return (float(values[0]), float(values[1]), float(values[2]))


@register_tower("timm")
class TimmTower(nn.Module):
    """A timm ViT or Eva driven through the tower protocol; see the module docstring for the token layout.

    ``add_class_token``: a model without a class token (SigLIP pools with an attention head instead) gets a
    new learnable one, since the MDL tokens are class tokens; without the flag such a model is refused.
    """

    def __init__(
        self,
        image_size: Sequence[int],
        name: str,
        weights: str | None = None,
        source: str = "timm",
        model_args: Mapping[str, Any] | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        pad_to_patch: bool = False,
        add_class_token: bool = False,
    ) -> None:
        super().__init__()
        if source not in timm_build.SOURCES:
            raise MDReIDError(f"model.backbone.source={source!r}: use one of {', '.join(timm_build.SOURCES)}")
        timm_name, args = (str(name), {}) if source == "timm" else timm_build.open_clip_trunk(str(name))
        args.update(model_args or {})
        patch = self._patch_size(timm_name, args)
        size = _padded(image_size, patch, pad_to_patch)
        model = timm_build.create(timm_name, size, args, weights)
        self._adopt(model, timm_name, add_class_token)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.padded_size = size
        self._set_input_map(_check_stats("mean", mean), _check_stats("std", std))

    @staticmethod
    def _patch_size(name: str, args: Mapping[str, Any]) -> tuple[int, int]:
        """The model's patch size, from a throwaway build at a size every patch divides (cheap at tiny sizes;
        a full-size model is built only once more)."""
        given = args.get("patch_size")
        if given is not None:
            p = given if isinstance(given, Sequence) else (given, given)
            return int(p[0]), int(p[1])
        model = timm_build.create(name, (224, 224), {**args, "depth": 0})
        return tuple(int(p) for p in model.patch_embed.patch_size)  # type: ignore[return-value]

    def _adopt(self, model: nn.Module, name: str, add_class_token: bool) -> None:
        """Take over the parts of ``model`` the tower runs, under timm's names (the table renamed)."""
        from timm.models.eva import Eva
        from timm.models.vision_transformer import VisionTransformer

        if not isinstance(model, VisionTransformer | Eva):
            raise MDReIDError(
                f"model.backbone.name: {name} is a {type(model).__name__}; the timm tower drives "
                "VisionTransformer (DINOv2, SigLIP) and Eva (DINOv3, EVA-02) models"
            )
        if getattr(model, "patch_drop", None) is not None and not isinstance(model.patch_drop, nn.Identity):
            raise MDReIDError(
                "model.backbone.model_args: the MDL encoder does not drop patches; remove patch_drop_rate"
            )
        for part in _RUN:
            module = getattr(model, part, None)
            if module is not None:
                self.add_module(part, module)
        self.embed_class = not model.no_embed_class
        self.reg_token = model.reg_token  # [1, R, W] or None
        self.num_registers = 0 if model.reg_token is None else int(model.reg_token.shape[1])
        table = model.pos_embed
        self.positional_embedding = None if table is None else nn.Parameter(table.detach()[0].clone())
        if model.cls_token is not None:
            self.cls_token = nn.Parameter(model.cls_token.detach().reshape(-1).clone())
        elif add_class_token:
            self.cls_token = nn.Parameter(torch.empty(model.embed_dim))
            nn.init.trunc_normal_(self.cls_token, std=0.02)
            self.embed_class = False  # the table has no row for a token the model never had
        else:
            raise MDReIDError(
                f"model.backbone: {name} has no class token (it pools with an attention head); set "
                "model.backbone.add_class_token=true to give it a new learnable one for the MDL tokens"
            )
        self.rope_mixed = bool(getattr(model, "rope_mixed", False))
        self.grid = tuple(int(g) for g in model.patch_embed.grid_size)
        self.out_dim = int(model.embed_dim)
        self.prefix_count = 1 if model.cls_token is not None else 0

    def _set_input_map(
        self, mean: tuple[float, float, float] | None, std: tuple[float, float, float] | None
    ) -> None:
        """``x -> x * scale + shift`` turning pipeline-normalised images into the weights' normalisation."""
        mean = PIPELINE_MEAN if mean is None else mean
        std = PIPELINE_STD if std is None else std
        pm, ps = torch.tensor(PIPELINE_MEAN), torch.tensor(PIPELINE_STD)
        m, s = torch.tensor(mean), torch.tensor(std)
        self.renormalise = bool((m != pm).any() or (s != ps).any())
        self.register_buffer("input_scale", (ps / s).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("input_shift", ((pm - m) / s).view(1, 3, 1, 1), persistent=False)

    @property
    def class_token(self) -> nn.Parameter:
        return self.cls_token

    def use_prefix_tokens(self, count: int) -> None:
        """Widen the class slot to ``count`` tokens: a table's class row repeated, and the attention blocks
        told that ``count`` + registers tokens precede the rotated patches."""
        if count < 0:
            raise ValueError(f"prefix token count must be >= 0, got {count}")
        if self.positional_embedding is not None and self.embed_class:
            table = self.positional_embedding.detach()
            rows = torch.cat([table[:1]] * count + [table[self.prefix_count :]], dim=0)
            trainable = self.positional_embedding.requires_grad
            self.positional_embedding = nn.Parameter(rows, requires_grad=trainable)
        for block in self.blocks:
            attn = getattr(block, "attn", None)
            if hasattr(attn, "num_prefix_tokens"):
                attn.num_prefix_tokens = count + self.num_registers
        self.prefix_count = count

    def embed_patches(self, images: torch.Tensor) -> torch.Tensor:
        x = images * self.input_scale + self.input_shift if self.renormalise else images
        pad_h, pad_w = self.padded_size[0] - x.shape[-2], self.padded_size[1] - x.shape[-1]
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return self.patch_embed(x)

    def _positions(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[prefix, patches]`` -> ``[prefix, registers, patches]`` with the absolute positions added."""
        count = self.prefix_count
        prefix, patches = tokens[:, :count], tokens[:, count:]
        table = None if self.positional_embedding is None else self.positional_embedding.to(tokens.dtype)
        if table is not None and not self.embed_class:
            patches = patches + table
        parts = [prefix]
        if self.reg_token is not None:
            parts.append(self.reg_token.to(tokens.dtype).expand(tokens.shape[0], -1, -1))
        x = torch.cat([*parts, patches], dim=1)
        if table is not None and self.embed_class:
            x = x + table
        return self.pos_drop(x)

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.norm_pre(self._positions(tokens))
        rope = getattr(self, "rope", None)
        if isinstance(self.blocks, nn.Sequential):  # VisionTransformer
            x = self.blocks(x)
        elif rope is None:  # Eva without rotary positions
            x = _run(self.blocks, x, None)
        else:
            embed = (
                rope.get_embed()
                if getattr(rope, "feat_shape", None) is not None
                else rope.get_embed(self.grid)
            )
            x = _run(self.blocks, x, embed, self.rope_mixed)
        count = self.prefix_count
        return torch.cat([x[:, :count], x[:, count + self.num_registers :]], dim=1)

    def project(self, prefix: torch.Tensor) -> torch.Tensor:
        return self.fc_norm(self.norm(prefix))


def _run(
    blocks: nn.ModuleList, x: torch.Tensor, rope: torch.Tensor | None, mixed: bool = False
) -> torch.Tensor:
    """Eva's block loop: the rotary embedding per call (one per block in mixed mode)."""
    for i, block in enumerate(blocks):
        x = block(x, rope=rope[i] if mixed and rope is not None else rope)
    return x
