"""The CLIP visual tower, built by open_clip: the only module that calls open_clip, so a CLIP-library change
touches one file.

The architecture comes from an open_clip model config (``ViT-B-16`` by default) read from the package's
bundled JSON files (never the network), optionally shrunk through ``vision`` overrides for tiny test/demo
towers. Weights, if any, come from a local file (:mod:`mdreid.models.clip_weights`); nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import open_clip
from open_clip.model import _build_vision_tower
from open_clip.transformer import VisionTransformer

from mdreid.config.sections import plain, typed_section
from mdreid.models.clip_weights import load_clip_visual_weights
from mdreid.process.errors import MDReIDError


@dataclass(frozen=True)
class VisionOverrides:
    """The ``model.backbone.vision`` section: tower fields that replace the open_clip config's (None = keep);
    ``heads`` is translated to open_clip's ``head_width``."""

    width: int | None = None
    layers: int | None = None
    heads: int | None = None
    head_width: int | None = None
    patch_size: int | None = None
    mlp_ratio: float | None = None


@dataclass(frozen=True)
class BackboneConfig:
    """The ``model.backbone`` section (the image size comes from ``data.image_size``); ``allow_random_init``
    is read by the train CLI's start-up check, not by the tower."""

    name: str = "ViT-B-16"
    weights: str | None = None
    quick_gelu: bool = True
    vision: VisionOverrides | None = None
    embed_dim: int | None = None
    allow_random_init: bool = True


def backbone_config(cfg: Mapping[str, Any] | None, where: str = "model.backbone") -> BackboneConfig:
    """The backbone section ``where`` (a config node or a checkpoint's plain dict) as a ``BackboneConfig``."""
    return typed_section(BackboneConfig, plain(cfg), where)


def _vision_cfg(
    name: str, image_size: tuple[int, int], vision: VisionOverrides | Mapping[str, Any] | None
) -> dict[str, Any]:
    """The open_clip ``vision_cfg`` dict of ``name`` with the image size and the overrides applied."""
    # list_models() only lists bundled configs: a schema name (hf-hub:, local-dir:) would reach the network.
    if name not in open_clip.list_models():
        raise MDReIDError(
            f"model.backbone.name: unknown open_clip architecture {name!r}; use a bundled ViT config such as ViT-B-16"
        )
    tower = dict(open_clip.get_model_config(name)["vision_cfg"])
    if tower.get("timm_model_name") or not isinstance(tower.get("layers"), int):
        raise MDReIDError(f"model.backbone.name: {name!r} is not a plain CLIP ViT; use e.g. ViT-B-16")
    if not isinstance(vision, VisionOverrides):
        vision = typed_section(VisionOverrides, plain(vision), "model.backbone.vision")
    overrides = {k: v for k, v in asdict(vision).items() if v is not None}
    heads = overrides.pop("heads", None)
    tower.update(overrides)
    if heads is not None:
        if tower["width"] % int(heads):
            raise MDReIDError(f"model.backbone.vision.heads={heads} must divide width={tower['width']}")
        tower["head_width"] = tower["width"] // int(heads)
    patch = int(tower["patch_size"])
    if image_size[0] % patch or image_size[1] % patch:
        raise MDReIDError(
            f"data.image_size={list(image_size)} must be a multiple of the patch size {patch} in both dimensions"
        )
    tower["image_size"] = image_size
    return tower


def backbone_kwargs(cfg: Mapping[str, Any] | BackboneConfig) -> dict[str, Any]:
    """The ``model.backbone`` section as ``build_backbone`` keyword arguments."""
    parsed = cfg if isinstance(cfg, BackboneConfig) else backbone_config(cfg)
    return {f.name: getattr(parsed, f.name) for f in fields(BackboneConfig) if f.name != "allow_random_init"}


def build_backbone(
    name: str = "ViT-B-16",
    weights: str | None = None,
    image_size: Sequence[int] = (256, 128),
    quick_gelu: bool = True,
    vision: VisionOverrides | Mapping[str, Any] | None = None,
    embed_dim: int | None = None,
) -> VisionTransformer:
    """An open_clip ``VisionTransformer`` for (H, W) inputs; random init, or CLIP weights from a local file.

    ``quick_gelu`` defaults to True because OpenAI's CLIP weights were trained with QuickGELU and open_clip
    cannot infer that from a file path. ``embed_dim`` (the projection width) defaults to the config's.
    """
    size = (int(image_size[0]), int(image_size[1]))
    vision_cfg = _vision_cfg(name, size, vision)
    out_dim = int(embed_dim) if embed_dim is not None else int(open_clip.get_model_config(name)["embed_dim"])
    visual = _build_vision_tower(out_dim, vision_cfg, quick_gelu=quick_gelu, cast_dtype=None)
    if weights:
        load_clip_visual_weights(visual, weights)
    return visual
