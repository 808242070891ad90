"""Building a timm vision transformer by name, for :class:`~mdreid.models.timm_tower.TimmTower`: the only
module that calls timm's model factory, so a timm change touches one file.

Two sources name a model. ``timm``: a timm model name (``vit_base_patch14_dinov2``, optionally with its
pretrained tag, ``.lvd142m``). ``open_clip``: an open_clip model name whose vision tower is a timm trunk
(``ViT-B-16-SigLIP``); its bundled config gives the timm name and the pooling, read from the package's JSON
files, never the network. ``model_args`` are keyword arguments of the timm constructor that replace the
named model's (``depth``, ``embed_dim``, ``num_heads``, ``patch_size``: a tiny variant of the same class).

Weights come from a local safetensors file only, read as data, and go through timm's own loading path for
that model (its checkpoint filter: key conversion of original releases, position-table resampling with
``timm.layers.resample_abs_pos_embed``, classifier removal) with every remote source cleared, so nothing is
downloaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import open_clip
import timm
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from mdreid.process.errors import MDReIDError

KEY = "model.backbone.weights"
SOURCES = ("timm", "open_clip")
# what an open_clip timm-trunk vision config may hold; anything else changes the trunk in ways not mirrored
_OPEN_CLIP_KEYS = ("image_size", "timm_model_name", "timm_model_pretrained", "timm_pool", "timm_proj")
# every remote location of a pretrained config, cleared so that timm's loader can only use the given tensors
_NO_REMOTE = {"url": None, "hf_hub_id": None, "hf_hub_filename": None, "file": None, "source": None}


def open_clip_trunk(name: str) -> tuple[str, dict[str, Any]]:
    """The timm model name and constructor arguments of open_clip model ``name``'s vision trunk, as
    open_clip's ``TimmModel`` creates it (no projection: the pooled trunk output is the image feature)."""
    if name not in open_clip.list_models():
        raise MDReIDError(
            f"model.backbone.name: unknown open_clip architecture {name!r}; use a bundled config such as "
            "ViT-B-16-SigLIP"
        )
    trunk = dict(open_clip.get_model_config(name)["vision_cfg"])
    if not trunk.get("timm_model_name"):
        raise MDReIDError(
            f"model.backbone.name: {name!r} is open_clip's own ViT, not a timm trunk; select it with "
            "model/backbone=vit_b16 and model.backbone.name (no model.backbone.tower)"
        )
    extra = sorted(set(trunk) - set(_OPEN_CLIP_KEYS))
    if extra or trunk.get("timm_proj") not in ("none", None, ""):
        raise MDReIDError(
            f"model.backbone.name: open_clip config {name!r} sets {extra or ['timm_proj=' + str(trunk['timm_proj'])]}, "
            "which the tower does not reproduce; use a config whose trunk output is the feature (e.g. SigLIP)"
        )
    return str(trunk["timm_model_name"]), {"num_classes": 0, "global_pool": trunk.get("timm_pool") or ""}


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a local safetensors file (read as data; nothing else is accepted)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise MDReIDError(
            f"{KEY}={path}: file not found; point it to a local .safetensors file or set it to null"
        )
    if file.suffix != ".safetensors":
        raise MDReIDError(
            f"{KEY}={path}: not a .safetensors file; timm towers load safetensors only (the files timm and "
            "open_clip publish are safetensors; convert another format once from a trusted copy)"
        )
    try:
        return load_file(str(file), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise MDReIDError(f"{KEY}={path}: not a readable safetensors file ({err})") from err


def create(
    name: str,
    img_size: tuple[int, int],
    model_args: Mapping[str, Any],
    weights: str | Path | None = None,
) -> nn.Module:
    """``timm.create_model(name, img_size=..., **model_args)`` at a fixed input size; with ``weights``, loaded
    through timm's pretrained path for that model from the file's tensors only."""
    if not timm.is_model(name):
        raise MDReIDError(
            f"model.backbone.name: {name!r} is not a timm model; use e.g. vit_base_patch14_dinov2 or "
            "vit_base_patch16_dinov3 (timm.list_models() lists them)"
        )
    args = {**model_args, "img_size": img_size, "dynamic_img_size": False}
    if weights is None:
        return timm.create_model(name, pretrained=False, **args)
    overlay = {**_NO_REMOTE, "state_dict": read_weights(weights)}
    try:
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **args)
    except (RuntimeError, KeyError, ValueError, AssertionError) as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise MDReIDError(
            f"{KEY}={weights}: does not fit timm model {name} ({reason[:300]}); check model.backbone.name and "
            "model_args against the file"
        ) from err
