"""What a command line says about the model, read from the config it composed: the values a checkpoint's are
compared with (``mdreid.checkpoint.architecture.check_contradictions``), and a copy of a config with the
values a checkpoint fixes put in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mdreid.checkpoint.architecture import ARCHITECTURE
from mdreid.config.keys import override_key
from mdreid.config.sections import leaves, plain


def given_model_values(cfg: DictConfig, overrides: Sequence[str]) -> dict[str, Any]:
    """The model values ``overrides`` set, flat under ``model`` (``backbone.vision.heads``), and
    ``image_size`` (``data.image_size``), as ``cfg`` holds them; a group choice (``model=baseline``,
    ``model/backbone=tiny``) gives the architecture keys of the node it fills."""
    given: dict[str, Any] = {}
    for override in overrides:
        key = override_key(override)
        if key in ("data.image_size", "model.image_size"):
            given["image_size"] = plain(cfg.data.image_size)
        elif key.startswith("model."):
            given.update(leaves(OmegaConf.select(cfg, key), key.removeprefix("model.")))
        elif key == "model" or key.startswith("model/"):
            group = key.replace("/", ".").removeprefix("model").lstrip(".")
            node = OmegaConf.select(cfg, f"model.{group}" if group else "model")
            given.update({k: v for k, v in leaves(node, group).items() if k.split(".")[0] in ARCHITECTURE})
    return given


def given_anywhere(overrides: Sequence[str], section: str) -> bool:
    """Whether one of ``overrides`` sets ``section`` or a key below it."""
    return any(override_key(o).startswith(section) for o in overrides)


def with_values(cfg: DictConfig, values: Mapping[str, Any]) -> DictConfig:
    """A new config: ``cfg`` with each dotted key of ``values`` set (a mapping replaces the node whole),
    interpolations kept; ``cfg`` itself is left as it was."""
    tree = OmegaConf.to_container(cfg, resolve=False)
    for key, value in values.items():
        *parents, last = key.split(".")
        node = tree
        for part in parents:
            node = node[part]
        node[last] = value
    new = OmegaConf.create(tree)
    OmegaConf.set_struct(new, bool(OmegaConf.is_struct(cfg)))
    return new
