"""The tower protocol: the few operations the MDL encoder needs from a vision transformer, and the choice of
tower from the ``model.backbone`` config section.

The encoder (:mod:`mdreid.models.mdl_encoder`) builds ``[prefix tokens, patch tokens]`` itself (the class
token plus the camera embedding, and in the decoupled model the shared token) and drives the tower through
these members only, so any backbone that provides them plugs in (docs/extending.md). A tower is an
``nn.Module``: the encoder registers it as ``encoder``, so its parameters are named ``mdl.encoder.<name>``
and learn at ``model.optim.backbone_lr``, except names containing ``positional_embedding`` (base LR).

``model.backbone`` without ``tower`` is an open_clip ViT (:mod:`mdreid.models.backbone`, driven by
:class:`~mdreid.models.openclip_tower.OpenCLIPTower`); with ``tower: NAME`` it is a registered tower
(:mod:`mdreid.models.tower_registry`: timm's, or one of your own), called with ``image_size`` and the
section's other keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from mdreid.models.backbone import backbone_kwargs, build_backbone
from mdreid.models.openclip_tower import OpenCLIPTower
from mdreid.models.tower_registry import TOWER, TOWERS
from mdreid.plugins import Plugin
from mdreid.process.errors import MDReIDError

# what the train CLI's start-up check reads; never passed to a tower
_NOT_TOWER_ARGS = (TOWER, "allow_random_init")
# how checkpoints written before towers were registered by name name the timm tower
_SAVED_TIMM_TARGET = ("_target_", "mdreid.models.timm_tower.TimmTower")


@runtime_checkable
class Tower(Protocol):
    """A vision transformer as the MDL encoder uses it. Token width ``W`` = ``class_token.shape[0]``."""

    @property
    def class_token(self) -> nn.Parameter:
        """The learnable class embedding ``[W]``: token 0 (plus the camera embedding), and in the official
        recipe the shared token too."""
        ...

    out_dim: int
    """The width of the features :meth:`project` returns."""

    def use_prefix_tokens(self, count: int) -> None:
        """Called once, at construction, before any weights are loaded: from now on :meth:`encode` gets
        ``count`` tokens before the patches. A position table grows a row per prefix token; the new rows
        start as copies of the class token's row."""
        ...

    def embed_patches(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` -> patch tokens ``[N, P, W]``."""
        ...

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[N, count + P, W]`` -> ``[N, count + P, W]``: positions added, then the blocks (with the norms the
        tower keeps around them)."""
        ...

    def project(self, prefix: torch.Tensor) -> torch.Tensor:
        """Encoded prefix tokens ``[N, count, W]`` -> features ``[N, count, out_dim]`` (final norm and
        projection)."""
        ...


# the protocol's members in their order above, named in the error for a tower that lacks some
TOWER_MEMBERS = tuple(name for name in vars(Tower) if not name.startswith("_"))


def tower_section(section: Mapping[str, Any]) -> dict[str, Any]:
    """``model.backbone`` as a plain dict, a checkpoint's ``_target_`` of the timm tower read as ``tower:
    timm``."""
    key, target = _SAVED_TIMM_TARGET
    if section.get(key) == target:
        return {TOWER: "timm", **{k: v for k, v in section.items() if k != key}}
    if key in section:
        raise MDReIDError(
            f"model.backbone._target_={section[key]!r}: a tower of your own is registered by name; decorate it "
            "with @register_tower('NAME') (mdreid.models.tower_registry) and set model.backbone.tower=NAME "
            "(docs/extending.md)"
        )
    return dict(section)


def _tower_args(section: Mapping[str, Any]) -> dict[str, Any]:
    """The keywords a registered tower is called with besides ``image_size``: ``weights`` and the rest."""
    return {"weights": None, **{k: v for k, v in section.items() if k not in _NOT_TOWER_ARGS}}


def _registered(section: Mapping[str, Any]) -> Plugin:
    """The registered tower the section names, checked against its keys: an unknown name, a misspelt or
    missing key (or a tower that does not take ``weights``, which a checkpoint's rebuild passes) is one line."""
    plugin = TOWERS.get(str(section[TOWER]))
    TOWERS.check_call(plugin, "model.backbone", keywords={"image_size": None, **_tower_args(section)})
    return plugin


def check_tower_section(section: Mapping[str, Any]) -> None:
    """The cheap start-up check of ``model.backbone``: the open_clip keys, or the tower's name and keys."""
    section = tower_section(section)
    if TOWER in section:
        _registered(section)
    else:
        backbone_kwargs(section)


def build_tower(section: Mapping[str, Any], image_size: Sequence[int]) -> Tower:
    """The tower ``model.backbone`` describes, for ``(H, W)`` images: an open_clip ViT, or the registered
    ``tower`` called with ``image_size`` and the section's other keys; a result without the protocol is
    refused."""
    size = (int(image_size[0]), int(image_size[1]))
    section = tower_section(section)
    if TOWER not in section:
        return OpenCLIPTower(build_backbone(**backbone_kwargs(section), image_size=size))
    plugin = _registered(section)
    tower = plugin.target(image_size=list(size), **_tower_args(section))
    missing = [name for name in TOWER_MEMBERS if not hasattr(tower, name)]
    if not isinstance(tower, nn.Module) or missing:
        raise MDReIDError(
            f"model.backbone.tower={plugin.name!r} ({plugin.path}) built a {type(tower).__name__}, which is not a "
            f"tower: it must be an nn.Module with {', '.join(TOWER_MEMBERS)} (missing: {', '.join(missing) or 'none'}); "
            "see docs/extending.md"
        )
    return tower
