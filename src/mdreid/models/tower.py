"""The tower protocol: the few operations the MDL encoder needs from a vision transformer, and the choice of
tower from the ``model.backbone`` config section.

The encoder (:mod:`mdreid.models.mdl_encoder`) builds ``[prefix tokens, patch tokens]`` itself (the class
token plus the camera embedding, and in the decoupled model the shared token) and drives the tower through
these members only, so any backbone that provides them plugs in (docs/extending.md). A tower is an
``nn.Module``: the encoder registers it as ``encoder``, so its parameters are named ``mdl.encoder.<name>``
and learn at ``model.optim.backbone_lr``, except names containing ``positional_embedding`` (base LR).

``model.backbone`` without ``_target_`` is an open_clip ViT (:mod:`mdreid.models.backbone`, driven by
:class:`~mdreid.models.openclip_tower.OpenCLIPTower`); with ``_target_`` it is a tower of your own, built
with Hydra's ``instantiate`` from the section's other keys plus ``image_size``.
"""

from __future__ import annotations

import inspect
import pkgutil
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from hydra.utils import instantiate
from torch import nn

from mdreid.models.backbone import backbone_kwargs, build_backbone
from mdreid.models.openclip_tower import OpenCLIPTower
from mdreid.process.errors import MDReIDError

TARGET = "_target_"
# what the train CLI's start-up check reads; never passed to a tower
_NOT_TOWER_ARGS = ("allow_random_init",)


@runtime_checkable
class Tower(Protocol):
    """A vision transformer as the MDL encoder uses it. Token width ``W`` = ``class_token.shape[0]``."""

    @property
    def class_token(self) -> nn.Parameter:
        """The learnable class embedding ``[W]``: token 0 (plus the camera embedding), and in the official
        recipe the shared token too."""
        ...

    @property
    def out_dim(self) -> int:
        """The width of the features :meth:`project` returns."""
        ...

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


def _check_target(section: Mapping[str, Any]) -> None:
    """A ``_target_`` tower's section checked against the target's signature: a misspelt or missing key (or a
    tower that does not take ``weights``, which a checkpoint's rebuild passes) is one line."""
    target = section[TARGET]
    try:
        build = pkgutil.resolve_name(str(target))
    except (ImportError, AttributeError, ValueError) as err:
        raise MDReIDError(
            f"model.backbone._target_={target!r} cannot be imported ({type(err).__name__}: {err}); give the "
            "dotted path of your tower class, its module importable (installed, or on PYTHONPATH)"
        ) from err
    args = {k: v for k, v in section.items() if not k.startswith("_") and k not in _NOT_TOWER_ARGS}
    try:
        signature = inspect.signature(build)
    except (TypeError, ValueError):  # no signature to check (a builtin): the call itself will tell
        return
    try:
        signature.bind(image_size=None, **args)
    except TypeError as err:
        raise MDReIDError(
            f"model.backbone: {target} cannot be called with image_size and the section's keys "
            f"{sorted(args)} ({err}); match the section to its arguments"
        ) from err


def check_tower_section(section: Mapping[str, Any]) -> None:
    """The cheap start-up check of ``model.backbone``: the open_clip keys, or the ``_target_`` and its keys."""
    if TARGET in section:
        _check_target(section)
    else:
        backbone_kwargs(section)


def build_tower(section: Mapping[str, Any], image_size: Sequence[int]) -> Tower:
    """The tower ``model.backbone`` describes, for ``(H, W)`` images: an open_clip ViT, or your ``_target_``
    called with the section's other keys and ``image_size``; a result without the protocol is refused."""
    size = (int(image_size[0]), int(image_size[1]))
    if TARGET not in section:
        return OpenCLIPTower(build_backbone(**backbone_kwargs(section), image_size=size))
    _check_target(section)
    spec = {k: v for k, v in section.items() if k not in _NOT_TOWER_ARGS}
    tower = instantiate(spec, image_size=list(size), _convert_="all")
    missing = [name for name in TOWER_MEMBERS if not hasattr(tower, name)]
    if not isinstance(tower, nn.Module) or missing:
        raise MDReIDError(
            f"model.backbone._target_={section[TARGET]!r} built a {type(tower).__name__}, which is not a tower: "
            f"it must be an nn.Module with {', '.join(TOWER_MEMBERS)} (missing: {', '.join(missing) or 'none'}); "
            "see docs/extending.md"
        )
    return tower
