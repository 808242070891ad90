"""Building Lightning objects from the Hydra config (callbacks, loggers, trainer), as lightning-hydra-template."""

from __future__ import annotations

import logging
import os

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf, open_dict

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


def configure_threads(cfg: DictConfig) -> None:
    """CPU threads for torch: ``auto`` leaves one core per DataLoader worker.

    Oversubscribed OpenMP threads spin-wait for cores the workers hold, which made tiny CPU runs ~6x slower.
    """
    threads = cfg.get("torch_threads", "auto")
    if threads is None:
        return
    if threads == "auto":
        workers = int(OmegaConf.select(cfg, "data.num_workers", default=0) or 0)
        threads = max(1, (os.cpu_count() or 1) - workers)
    torch.set_num_threads(int(threads))


def instantiate_trainer(cfg: DictConfig, callbacks: list[Callback], loggers: list[Logger]) -> L.Trainer:
    resolve_precision(cfg)
    configure_threads(cfg)
    return instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers or False,
        plugins=[AtomicCheckpointIO()],
    )
