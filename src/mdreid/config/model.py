"""The ``model`` config's typed sections, read by one function: ``ReIDModule`` reads its arguments through it
and the train CLI's start-up check calls the same function before any data is read, so both accept and
refuse exactly the same configs. ``model.backbone`` is read by the network that builds the tower
(:func:`mdreid.models.backbone.backbone_config`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mdreid.config.sections import plain, typed_section
from mdreid.losses.loss_config import LossConfig
from mdreid.models.mdl_encoder import MDLConfig
from mdreid.optim.lr_schedule import ScheduleConfig
from mdreid.optim.param_groups import OptimConfig


@dataclass(frozen=True)
class ModelSections:
    """``model.mdl``, ``model.loss``, ``model.optim`` and ``model.schedule``, typed."""

    mdl: MDLConfig
    loss: LossConfig
    optim: OptimConfig
    schedule: ScheduleConfig


def model_sections(model: Mapping[str, Any]) -> ModelSections:
    """The typed sections of a ``model`` config node or a checkpoint's plain hyper-parameters (a missing
    section takes its defaults)."""
    return ModelSections(
        mdl=typed_section(MDLConfig, plain(model.get("mdl")), "model.mdl"),
        loss=typed_section(LossConfig, plain(model.get("loss")), "model.loss"),
        optim=typed_section(OptimConfig, plain(model.get("optim")), "model.optim"),
        schedule=typed_section(ScheduleConfig, plain(model.get("schedule")), "model.schedule"),
    )
