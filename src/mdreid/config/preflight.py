"""Cheap checks of a training config, run before the data, the model or a logger is built: an ordinary
mistake costs a second and one ``error:`` line, not a model build or a data scan first."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from mdreid.config.model import ModelSections, model_sections
from mdreid.config.run import RunConfig
from mdreid.config.sections import plain
from mdreid.data.data_config import DataConfig
from mdreid.data.val_split import NONE, TEST, ValConfig
from mdreid.losses.extra_terms import check_loss_terms
from mdreid.models.backbone import BackboneConfig, backbone_config
from mdreid.models.tower import check_tower_section
from mdreid.models.tower_registry import TOWER
from mdreid.process.errors import MDReIDError
from mdreid.process.output_dir import check_writable


def check_pretrained_weights(run: RunConfig, backbone: BackboneConfig) -> None:
    """A recipe that starts from pretrained weights (``allow_random_init: false`` in its backbone config: CLIP,
    or a registered tower such as DINOv2) needs ``model.backbone.weights``, unless the run starts from
    another checkpoint (``init_from``, ``ckpt_path``)."""
    if backbone.weights or backbone.allow_random_init:
        return
    if run.init_from or run.ckpt_path:
        return
    raise MDReIDError(
        f"model.backbone.weights is not set: the {backbone.name} recipe starts from pretrained weights, a local "
        "file (a .safetensors for a timm tower; for CLIP, convert OpenAI's ViT-B-16.pt once with "
        "scripts/convert_clip_weights.py); to train a randomly initialised tower anyway, set "
        "model.backbone.allow_random_init=true"
    )


def check_selection(selecting: dict[str, str], val: ValConfig) -> None:
    """Selection needs a validation split, and selecting on the test split needs the user's explicit
    ``data.val=test``: ``selecting`` maps each config key that selects (a monitor, ``optimized_metric``) to
    its metric."""
    for key, metric in selecting.items():
        if metric.startswith("val/") and val.mode == NONE:
            raise MDReIDError(
                f"{key}={metric}: data.val=none trains on every identity and has no validation split, so there "
                f"is nothing to select on; set {key}=null, or hold identities out with the default data.val"
            )
        if metric.startswith("test/") and val.mode != TEST:
            raise MDReIDError(
                f"{key}={metric} selects on the test split; select on the validation split ({key}=val/"
                f"{metric.removeprefix('test/')}), or, to select on test anyway, say so with data.val=test"
            )


@dataclass(frozen=True)
class CheckedTrainConfig:
    """What the start-up checks parsed, passed down so that nobody parses it again."""

    data: DataConfig  # the data section, the validation split included
    sections: ModelSections  # the model's typed sections (mdl, loss, optim, schedule)


def check_train_config(cfg: DictConfig, run: RunConfig) -> CheckedTrainConfig:
    """Every check that needs only the config: output folder, epochs, data and model sections, pretrained
    weights, what the run selects on. Returns what it parsed."""
    check_writable(cfg.paths.output_dir, "paths.output_dir")
    data = DataConfig.parse(cfg.data)
    check_selection(run.monitors(), data.val)
    epochs = OmegaConf.select(cfg, "trainer.max_epochs")
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise MDReIDError(
            f"trainer.max_epochs={epochs}: train for at least 1 epoch (the LR schedule needs a finite length)"
        )
    # a config refused here never reaches the data; the sections go on to the module (the tower reads its
    # own section when it is built)
    sections = model_sections(cfg.model)
    check_loss_terms(sections.loss)
    backbone = plain(cfg.model.backbone)
    check_tower_section(backbone)
    if TOWER not in backbone:
        check_pretrained_weights(run, backbone_config(backbone))
    elif backbone.get("allow_random_init") is False:  # a tower of your own that asks for the same check
        name = str(backbone.get("name") or backbone[TOWER])
        weights = backbone.get("weights")
        check_pretrained_weights(run, BackboneConfig(name=name, weights=weights, allow_random_init=False))
    return CheckedTrainConfig(data, sections)
