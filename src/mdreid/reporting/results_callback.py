"""Publishing the test result from inside the Trainer, so it works for every strategy (``ddp_spawn`` included,
where the objects of the launching process never see the result)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, OmegaConf

from mdreid.feature_file import FeatureSet, write_feature_file
from mdreid.feature_file.schema import DEFAULT_NAME
from mdreid.metrics.eval_config import EvalConfig
from mdreid.module import ReIDModule
from mdreid.reporting.reports import publish

log = logging.getLogger(__name__)


def selection_label(cfg: DictConfig) -> str:
    """How the reported checkpoint was chosen; selecting on the evaluation split is selecting on test."""
    monitor = OmegaConf.select(cfg, "callbacks.model_checkpoint.monitor")
    return f"best-on-test ({monitor})" if monitor else "last-epoch"


def results_header(cfg: DictConfig, **extra: Any) -> dict[str, Any]:
    """What metrics.json says about how its numbers were produced."""
    return {
        "task_name": cfg.task_name,
        "dataset": cfg.data.dataset,
        "selection": selection_label(cfg),
        "seed": cfg.seed,
        **extra,
    }


class PublishResults(Callback):
    """On global rank 0 after testing: tables, metrics.json / metrics.csv, plots and W&B media, and with
    ``save_features`` the scored features as ``features.safetensors`` (``mdreid.score`` reads it back)."""

    def __init__(
        self,
        out_dir: str | Path,
        header: Mapping[str, Any],
        plots: bool = True,
        save_features: bool = False,
        plots_cam: bool = False,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.header = dict(header)
        self.plots = plots
        self.plots_cam = plots_cam
        self.save_features = save_features
        self.files: dict[str, Path] = {}

    @classmethod
    def from_config(cls, cfg: DictConfig, evaluation: EvalConfig, **header: Any) -> PublishResults:
        """Into the run directory, with ``results_header(cfg, **header)``, plots and saved features as the
        run's ``eval`` section (``evaluation``) says."""
        header = results_header(cfg, **header)
        return cls(
            cfg.paths.output_dir,
            header,
            plots=evaluation.plots,
            save_features=evaluation.save_features,
            plots_cam=evaluation.plots_cam,
        )

    def _explain(self, pl_module: ReIDModule, similarity: str):
        """``Explainer.match`` of the tested model for the ranked lists (eval.plots_cam), else None."""
        if not self.plots_cam:
            return None
        from mdreid.explain.cam import TARGET_MODES
        from mdreid.explain.explainer import Explainer

        if similarity not in TARGET_MODES:
            log.warning("no Grad-CAM in the ranked lists: similarity %s has no map target", similarity)
            return None
        return Explainer(pl_module, similarity, pl_module.device).match

    def on_test_end(self, trainer: L.Trainer, pl_module: ReIDModule) -> None:
        evaluation = pl_module.test_evaluation
        if not trainer.is_global_zero or evaluation is None:
            return
        datamodule = trainer.datamodule
        records = datamodule.eval_set.records if self.plots and datamodule is not None else None
        header = {"epoch": trainer.current_epoch, "global_step": trainer.global_step, **self.header}
        self.files = publish(
            evaluation.result,
            self.out_dir,
            header,
            loggers=trainer.loggers,
            samples=evaluation.samples if self.plots else None,
            records=records,
            explain=self._explain(pl_module, evaluation.result.similarity) if self.plots else None,
        )
        if self.save_features:
            saved = FeatureSet.from_samples(
                evaluation.samples, evaluation.result.junk, dataset=header["dataset"], provenance=header
            )
            self.files[DEFAULT_NAME] = write_feature_file(self.out_dir / DEFAULT_NAME, saved)
            log.info("%s: %s", DEFAULT_NAME, self.files[DEFAULT_NAME])
