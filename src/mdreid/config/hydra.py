"""Hydra helpers: composing a config outside ``@hydra.main`` and building the Lightning objects it names
(callbacks, loggers, trainer), as lightning-hydra-template."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, ModelSummary, ProgressBar
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig

from mdreid.config.check import compose_checked
from mdreid.config.sections import plain, typed_section, typed_view
from mdreid.lightning_plugins.atomic_checkpoint_io import AtomicCheckpointIO
from mdreid.lightning_plugins.model_summary import ParamSummary
from mdreid.lightning_plugins.plain_progress import progress_bar
from mdreid.process.errors import MDReIDError
from mdreid.process.logs import quiet_known_noise

log = logging.getLogger(__name__)


def compose_config(
    config_name: str, overrides: Sequence[str] = (), return_hydra_config: bool = False
) -> DictConfig:
    """The config ``python -m mdreid.<entry> OVERRIDES`` runs with, for tests, scripts and notebooks.

    Any Hydra instance left by an earlier compose is cleared first, so calls do not depend on each other;
    Hydra's config errors (an unknown key or group option) are one ``MDReIDError`` line.
    """
    return compose_checked(config_name, overrides, return_hydra_config)


def command_line_overrides() -> list[str]:
    """The overrides of the running Hydra job as typed (``model.mdl.decoupled=false``, ``model=baseline``);
    empty outside a Hydra job."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def _targets(group: DictConfig | None) -> list:
    return [instantiate(node) for node in (group or {}).values() if node is not None and "_target_" in node]


def instantiate_callbacks(cfg: DictConfig | None) -> list[Callback]:
    return _targets(cfg)


def instantiate_loggers(cfg: DictConfig | None) -> list[Logger]:
    return _targets(cfg)


@dataclass(frozen=True)
class TrainerFlags:
    """The ``trainer`` keys mdreid acts on before Lightning builds the Trainer from the whole section (Lightning
    checks every key, these included, itself)."""

    accelerator: str = "auto"
    precision: str | int = "32-true"
    barebones: bool = False
    enable_progress_bar: bool = True
    enable_model_summary: bool = True


@dataclass(frozen=True)
class RuntimeConfig:
    """The ``runtime`` section: process settings of a run.

    ``torch_threads``: CPU threads for torch; ``auto`` leaves one core per DataLoader worker (oversubscribed
    OpenMP threads spin-wait for cores the workers hold, which made tiny CPU runs ~6x slower), None keeps
    torch's default.
    """

    torch_threads: str | int | None = "auto"

    def __post_init__(self) -> None:
        value = self.torch_threads
        if value not in (None, "auto") and not (
            isinstance(value, int) and not isinstance(value, bool) and value > 0
        ):
            raise MDReIDError(f"runtime.torch_threads={value!r}: use auto, null or a positive integer")


@dataclass(frozen=True)
class LoaderWorkers:
    """``data.num_workers``, the one ``data`` key the thread count depends on (``DataConfig`` checks it)."""

    num_workers: int | None = 0


def resolve_precision(flags: TrainerFlags) -> str | int:
    """Mixed precision is a GPU recipe setting; on a CPU-only run fall back to fp32 with one log line."""
    on_cpu = flags.accelerator == "cpu" or (flags.accelerator == "auto" and not torch.cuda.is_available())
    if on_cpu and "16" in str(flags.precision):
        log.info("no GPU: trainer.precision=%s -> 32-true", flags.precision)
        return "32-true"
    return flags.precision


def configure_threads(cfg: DictConfig) -> None:
    """Set torch's CPU threads as ``runtime.torch_threads`` says (see ``RuntimeConfig``)."""
    threads = typed_section(RuntimeConfig, plain(cfg.runtime), "runtime").torch_threads
    if threads is None:
        return
    if threads == "auto":
        loading = typed_view(LoaderWorkers, cfg.data, "data") if "data" in cfg else LoaderWorkers()
        threads = max(1, (os.cpu_count() or 1) - (loading.num_workers or 0))
    torch.set_num_threads(threads)


def with_display_callbacks(flags: TrainerFlags, callbacks: list[Callback]) -> list[Callback]:
    """``callbacks`` plus the progress bar and model summary the trainer flags ask for and the list lacks.

    Lightning's own defaults would be the Rich bar even in a log file and a summary with an empty FLOPs
    column; choosing them here also leaves Lightning no default summary to announce it skipped.
    """
    callbacks = list(callbacks)
    if flags.barebones:
        return callbacks
    has_bar = any(isinstance(c, ProgressBar) for c in callbacks)
    has_summary = any(isinstance(c, ModelSummary) for c in callbacks)
    if flags.enable_progress_bar and not has_bar:
        callbacks.append(progress_bar())
    if flags.enable_model_summary and not has_summary:
        callbacks.append(ParamSummary(max_depth=1))
    return callbacks


def instantiate_trainer(
    cfg: DictConfig, callbacks: list[Callback], loggers: list[Logger], **fixed: Any
) -> L.Trainer:
    """The configured Trainer; ``fixed`` are Trainer arguments the run decides (no validation loop without a
    validation split), over the config's."""
    quiet_known_noise()
    flags = typed_view(TrainerFlags, cfg.trainer, "trainer")
    configure_threads(cfg)
    return instantiate(
        cfg.trainer,
        precision=resolve_precision(flags),
        callbacks=with_display_callbacks(flags, callbacks),
        logger=loggers or False,
        plugins=[AtomicCheckpointIO()],
        # any summary is in the callbacks by now (with_display_callbacks)
        enable_model_summary=False,
        **fixed,
    )
