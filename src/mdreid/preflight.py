"""Cheap checks of a training config, run before the data, the model or a logger is built: an ordinary
mistake costs a second and one ``error:`` line, not a model build or a data scan first."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from mdreid.losses.loss_config import LossConfig
from mdreid.models.mdl_encoder import MDLConfig
from mdreid.models.tower import check_tower_section
from mdreid.optim.lr_schedule import ScheduleConfig
from mdreid.optim.param_groups import LrRules
from mdreid.run_config import RunConfig
from mdreid.runtime.config_sections import plain, typed_section
from mdreid.runtime.errors import MDReIDError
from mdreid.runtime.output_dir import check_writable

# model.<section> -> the dataclass ReIDModule reads it into
MODEL_SECTIONS: tuple[tuple[str, type], ...] = (
    ("mdl", MDLConfig),
    ("loss", LossConfig),
    ("optim", LrRules),
    ("schedule", ScheduleConfig),
)


def check_pretrained_weights(cfg: DictConfig, run: RunConfig) -> None:
    """A recipe that starts from CLIP (``allow_random_init: false`` in its backbone config) needs
    ``model.backbone.weights``, unless the run starts from another checkpoint (``init_from``, ``ckpt_path``)."""
    backbone = cfg.model.backbone
    if backbone.get("weights") or backbone.get("allow_random_init", True):
        return
    if run.init_from or run.ckpt_path:
        return
    raise MDReIDError(
        f"model.backbone.weights is not set: the {backbone.get('name')} recipe starts from CLIP weights, a local "
        "file (convert OpenAI's ViT-B-16.pt once with scripts/convert_clip_weights.py); to train a randomly "
        "initialised tower anyway, set model.backbone.allow_random_init=true"
    )


def check_train_config(cfg: DictConfig, run: RunConfig) -> None:
    """Every check that needs only the config: output folder, epochs, model sections, pretrained weights."""
    check_writable(cfg.paths.output_dir, "paths.output_dir")
    epochs = OmegaConf.select(cfg, "trainer.max_epochs")
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise MDReIDError(
            f"trainer.max_epochs={epochs}: train for at least 1 epoch (the LR schedule needs a finite length)"
        )
    for name, cls in MODEL_SECTIONS:
        typed_section(cls, plain(cfg.model.get(name)), f"model.{name}")
    check_tower_section(plain(cfg.model.backbone))
    check_pretrained_weights(cfg, run)
