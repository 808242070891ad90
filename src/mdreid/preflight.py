"""Cheap checks of a training config, run before the data, the model or a logger is built: an ordinary
mistake costs a second and one ``error:`` line, not a model build or a data scan first."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from mdreid.model_config import ModelSections, model_sections
from mdreid.runtime.errors import MDReIDError
from mdreid.runtime.output_dir import check_writable


def check_pretrained_weights(cfg: DictConfig, sections: ModelSections) -> None:
    """A recipe that starts from CLIP (``allow_random_init: false`` in its backbone config) needs
    ``model.backbone.weights``, unless the run starts from another checkpoint (``init_from``, ``ckpt_path``)."""
    backbone = sections.backbone
    if backbone.weights or backbone.allow_random_init:
        return
    if cfg.get("init_from") or cfg.get("ckpt_path"):
        return
    raise MDReIDError(
        f"model.backbone.weights is not set: the {backbone.name} recipe starts from CLIP weights, a local "
        "file (convert OpenAI's ViT-B-16.pt once with scripts/convert_clip_weights.py); to train a randomly "
        "initialised tower anyway, set model.backbone.allow_random_init=true"
    )


def check_train_config(cfg: DictConfig) -> None:
    """Every check that needs only the config: output folder, epochs, model sections, pretrained weights."""
    check_writable(cfg.paths.output_dir, "paths.output_dir")
    epochs = OmegaConf.select(cfg, "trainer.max_epochs")
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise MDReIDError(
            f"trainer.max_epochs={epochs}: train for at least 1 epoch (the LR schedule needs a finite length)"
        )
    # the same reading ReIDModule does later: its arguments may still change (init_from adopts a checkpoint's
    # architecture), so it reads them again itself, but a config this refuses never reaches the data
    check_pretrained_weights(cfg, model_sections(cfg.model))
