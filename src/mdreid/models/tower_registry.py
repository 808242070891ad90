"""Towers by name: plug-ins of the ``TOWERS`` registry, selected by ``model.backbone.tower`` (docs/extending.md).

``@register_tower("name")`` on an ``nn.Module`` class with the tower protocol (:mod:`mdreid.models.tower`);
mdreid calls it with ``image_size=[H, W]``, ``weights`` and the section's other keys. mdreid's own timm tower is
registered the same way, as ``timm``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from mdreid.plugins import Registry

T = TypeVar("T", bound=Callable[..., Any])

# the key of a model.backbone section that names a registered tower (without it: an open_clip ViT)
TOWER = "tower"

TOWERS = Registry(
    "tower", "mdreid.towers", "model.backbone.tower", "register_tower", builtin=("mdreid.models.timm_tower",)
)


def register_tower(name: str) -> Callable[[T], T]:
    """Decorator: ``model.backbone.tower=<name>`` builds the decorated tower class."""
    return TOWERS.register(name)
