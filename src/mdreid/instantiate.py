"""Building Lightning objects from the Hydra config (callbacks, loggers, trainer), as lightning-hydra-template."""

from __future__ import annotations

import logging

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, open_dict

from mdreid.atomic_io import AtomicCheckpointIO

log = logging.getLogger(__name__)


def _targets(group: DictConfig | None) -> list:
    return [instantiate(node) for node in (group or {}).values() if node is not None and "_target_" in node]


def instantiate_callbacks(cfg: DictConfig | None) -> list[Callback]:
    return _targets(cfg)


def instantiate_loggers(cfg: DictConfig | None) -> list[Logger]:
    return _targets(cfg)


def resolve_precision(cfg: DictConfig) -> None:
    """Mixed precision is a GPU recipe setting; on a CPU-only run fall back to fp32 with one log line."""
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if on_cpu and "16" in str(cfg.trainer.get("precision", "32-true")):
        log.info("no GPU: trainer.precision=%s -> 32-true", cfg.trainer.precision)
        with open_dict(cfg):
            cfg.trainer.precision = "32-true"


def instantiate_trainer(cfg: DictConfig, callbacks: list[Callback], loggers: list[Logger]) -> L.Trainer:
    resolve_precision(cfg)
    return instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers or False,
        plugins=[AtomicCheckpointIO()],
    )
