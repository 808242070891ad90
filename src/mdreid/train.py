"""Training entry point: ``python -m mdreid.train experiment=NAME [overrides]``.

``train(cfg)`` does the work and is what tests call through the compose API; ``main()`` is the thin Hydra
wrapper that returns the optimised metric for sweepers.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mdreid.atomic_io import atomic_write_json
from mdreid.config import config_dir
from mdreid.errors import MDReIDError, cli_errors
from mdreid.instantiate import instantiate_callbacks, instantiate_loggers, instantiate_trainer
from mdreid.module import ReIDModule

log = logging.getLogger(__name__)


def build_datamodule(cfg: DictConfig) -> L.LightningDataModule:
    """The DataModule, with the dataset prepared (synthetic data generated if configured) and indexed."""
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    return datamodule


def build_module(cfg: DictConfig, datamodule: Any) -> ReIDModule:
    """The LightningModule sized from the data: identities, cameras, junk rule, image size."""
    return instantiate(
        cfg.model,
        num_classes=datamodule.num_classes,
        num_cameras=datamodule.num_cameras,
        junk=datamodule.junk_rule,
        evaluation=cfg.get("eval"),
        _convert_="all",
    )


def selection_label(cfg: DictConfig) -> str:
    """How the reported checkpoint was chosen; selecting on the evaluation split is selecting on test."""
    monitor = OmegaConf.select(cfg, "callbacks.model_checkpoint.monitor")
    return f"best-on-test ({monitor})" if monitor else "last-epoch"


def write_metrics(path: Path, cfg: DictConfig, result: Any, extra: dict[str, Any]) -> Path:
    payload = {
        "task_name": cfg.task_name,
        "dataset": cfg.data.dataset,
        "selection": selection_label(cfg),
        "similarity": cfg.eval.similarity,
        **extra,
        **result.to_dict(),
    }
    return atomic_write_json(path, payload)


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, optionally test, write ``metrics.json`` into the run directory; returns the logged metrics."""
    L.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    model = build_module(cfg, datamodule)
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    loggers = instantiate_loggers(cfg.get("logger"))
    trainer = instantiate_trainer(cfg, callbacks, loggers)
    for lg in loggers:
        lg.log_hyperparams(
            {
                "cfg": OmegaConf.to_container(cfg, resolve=True),
                "params/total": sum(p.numel() for p in model.parameters()),
                "params/trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            }
        )

    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=False)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if cfg.get("test"):
        ckpt = "best" if OmegaConf.select(cfg, "callbacks.model_checkpoint.monitor") else None
        trainer.test(model, datamodule=datamodule, ckpt_path=ckpt, weights_only=False, verbose=False)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    if trainer.is_global_zero and model.last_result is not None:
        out = Path(cfg.paths.output_dir) / "metrics.json"
        write_metrics(out, cfg, model.last_result, {"epoch": trainer.current_epoch})
        log.info("wrote %s", out)
    return metrics


@cli_errors
def run(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    name = cfg.get("optimized_metric")
    if name and name not in metrics:
        raise MDReIDError(f"optimized_metric={name!r} was not logged; pick one of: {', '.join(sorted(metrics))}")
    return metrics.get(name) if name else None


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train.yaml")
def main(cfg: DictConfig) -> float | None:
    return run(cfg)


if __name__ == "__main__":
    main()
