"""Hydra helpers: composing a config outside ``@hydra.main`` and building the Lightning objects it names
(callbacks, loggers, trainer), as lightning-hydra-template."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, ModelSummary, ProgressBar
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf, open_dict

from mdreid.runtime.atomic_checkpoint_io import AtomicCheckpointIO
from mdreid.runtime.config import config_dir
from mdreid.runtime.logs import ParamSummary, quiet_known_noise
from mdreid.runtime.plain_progress import progress_bar

log = logging.getLogger(__name__)


def compose_config(
    config_name: str, overrides: Sequence[str] = (), return_hydra_config: bool = False
) -> DictConfig:
    """The config ``python -m mdreid.<entry> OVERRIDES`` runs with, for tests, scripts and notebooks.

    Any Hydra instance left by an earlier compose is cleared first, so calls do not depend on each other.
    """
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name, overrides=list(overrides), return_hydra_config=return_hydra_config)


def command_line_overrides() -> list[str]:
    """The overrides of the running Hydra job as typed (``model.mdl.decoupled=false``, ``model=baseline``);
    empty outside a Hydra job."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def override_key(override: str) -> str:
    """``++model.x=1`` -> ``model.x``; ``model/backbone=tiny`` -> ``model/backbone``."""
    return override.split("=", 1)[0].lstrip("~+").split("@", 1)[0]


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


def with_display_callbacks(trainer_cfg: DictConfig, callbacks: list[Callback]) -> list[Callback]:
    """``callbacks`` plus the progress bar and model summary the trainer flags ask for and the list lacks.

    Lightning's own defaults would be the Rich bar even in a log file and a summary with an empty FLOPs
    column; choosing them here also leaves Lightning no default summary to announce it skipped.
    """
    callbacks = list(callbacks)
    if trainer_cfg.get("barebones"):
        return callbacks
    has_bar = any(isinstance(c, ProgressBar) for c in callbacks)
    has_summary = any(isinstance(c, ModelSummary) for c in callbacks)
    if trainer_cfg.get("enable_progress_bar") is not False and not has_bar:
        callbacks.append(progress_bar())
    if trainer_cfg.get("enable_model_summary") is not False and not has_summary:
        callbacks.append(ParamSummary(max_depth=1))
    return callbacks


def instantiate_trainer(cfg: DictConfig, callbacks: list[Callback], loggers: list[Logger]) -> L.Trainer:
    quiet_known_noise()
    resolve_precision(cfg)
    configure_threads(cfg)
    return instantiate(
        cfg.trainer,
        callbacks=with_display_callbacks(cfg.trainer, callbacks),
        logger=loggers or False,
        plugins=[AtomicCheckpointIO()],
        # any summary is in the callbacks by now (with_display_callbacks)
        enable_model_summary=False,
    )
