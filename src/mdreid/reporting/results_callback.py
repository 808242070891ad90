"""Publishing the test result from inside the Trainer, so it works for every strategy (``ddp_spawn`` included,
where the objects of the launching process never see the result)."""

from __future__ import annotations

import copy
import importlib.util
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn

from mdreid.config.run import RunConfig
from mdreid.feature_file import FeatureSet, write_feature_file
from mdreid.feature_file.schema import DEFAULT_NAME
from mdreid.metrics.eval_config import EvalConfig
from mdreid.module import ReIDModule
from mdreid.process.errors import MDReIDError
from mdreid.reporting.protocol import PROTOCOL_KEY, summarize_protocol
from mdreid.reporting.reports import publish

log = logging.getLogger(__name__)


def results_header(run: RunConfig, dataset: str, **extra: Any) -> dict[str, Any]:
    """What metrics.json says about how its numbers were produced."""
    return {"task_name": run.task_name, "dataset": dataset, "seed": run.seed, **extra}


def check_plots_cam(evaluation: EvalConfig) -> None:
    """``eval.plots_cam=true`` draws Grad-CAM maps in the ranked lists: refuse, before a run does any work, a
    setting under which none would be drawn."""
    from mdreid.explain.cam import TARGET_MODES

    if not evaluation.plots or evaluation.rerank:
        off = "eval.plots=false" if not evaluation.plots else "eval.rerank=true (they show the plain ranking)"
        raise MDReIDError(
            f"eval.plots_cam=true draws in the ranked lists, which {off} leaves out: set eval.plots_cam=false"
        )
    if evaluation.similarity not in TARGET_MODES:
        raise MDReIDError(
            f"eval.plots_cam=true: the maps explain a match score of eval.similarity {', '.join(TARGET_MODES)}, "
            f"not {evaluation.similarity!r}; set one of those or eval.plots_cam=false"
        )
    if importlib.util.find_spec("pytorch_grad_cam") is None:
        raise MDReIDError("eval.plots_cam=true needs the grad-cam package: pip install 'mdreid[explain]'")


class PublishResults(Callback):
    """On global rank 0 after testing: tables, metrics.json / metrics.csv, plots and W&B media, and with
    ``save_features`` the scored features as ``features.safetensors`` (``mdreid.score`` reads it back).

    A training run's ``protocol`` record (``reporting.protocol``) goes into every checkpoint it writes and,
    with the epoch of the weights that were tested, into metrics.json and the W&B summary.
    """

    def __init__(
        self,
        out_dir: str | Path,
        header: Mapping[str, Any],
        plots: bool = True,
        save_features: bool = False,
        protocol: Mapping[str, Any] | None = None,
        plots_cam: bool = False,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.header = dict(header)
        self.plots = plots
        self.plots_cam = plots_cam
        self.save_features = save_features
        self.protocol = copy.deepcopy(dict(protocol)) if protocol is not None else None
        self.files: dict[str, Path] = {}
        self._loaded_epoch: int | None = None
        self._validation: dict[str, float] | None = None

    @classmethod
    def from_config(
        cls,
        run: RunConfig,
        dataset: str,
        evaluation: EvalConfig,
        protocol: Mapping[str, Any] | None = None,
        **header: Any,
    ) -> PublishResults:
        """Into the run directory, with ``results_header(run, dataset, **header)``, plots and saved features as
        the run's ``eval`` section (``evaluation``) says."""
        header = results_header(run, dataset, **header)
        if evaluation.plots_cam:
            check_plots_cam(evaluation)
        return cls(
            run.output_dir,
            header,
            plots=evaluation.plots,
            save_features=evaluation.save_features,
            protocol=protocol,
            plots_cam=evaluation.plots_cam,
        )

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: ReIDModule, checkpoint: dict[str, Any]
    ) -> None:
        if self.protocol is not None:
            checkpoint[PROTOCOL_KEY] = copy.deepcopy(self.protocol)

    def on_validation_end(self, trainer: L.Trainer, pl_module: ReIDModule) -> None:
        """Keep the last validation's scores for metrics.json (testing replaces the Trainer's metrics)."""
        if not trainer.sanity_checking:
            # during fit, validation ends 0-based epoch e: the weights after e + 1 epochs
            fitting = trainer.state.fn == TrainerFn.FITTING
            # the score and the named settings (val/<group>/<setting>/<metric>), not the 49 pairs
            scores = {
                k: float(v)
                for k, v in trainer.callback_metrics.items()
                if k == "val/score" or (k.startswith("val/") and k.count("/") == 3)
            }
            self._validation = {"epoch": trainer.current_epoch + int(fitting), **scores}

    @property
    def validated_epoch(self) -> int | None:
        """The epoch count of the weights last validated (None before any validation)."""
        return None if self._validation is None else self._validation["epoch"]

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: ReIDModule, checkpoint: dict[str, Any]
    ) -> None:
        self._loaded_epoch = checkpoint.get("epoch")

    def _tested_protocol(self, trainer: L.Trainer) -> dict[str, Any]:
        """The protocol with the epoch of the tested weights: the last one, or the monitored checkpoint's
        (an evaluation's record names its checkpoint's epoch already)."""
        protocol = copy.deepcopy(self.protocol)
        if "epoch" in protocol["selection"]:
            return protocol
        best = protocol["selection"]["checkpoint"] != "last-epoch"
        # a checkpoint saved at the end of 0-based epoch e holds the weights after e + 1 epochs
        epoch = self._loaded_epoch + 1 if best and self._loaded_epoch is not None else trainer.current_epoch
        protocol["selection"]["epoch"] = epoch
        return protocol

    def _explain(self, pl_module: ReIDModule, similarity: str):
        """``Explainer.match`` of the tested model for the ranked lists (eval.plots_cam), else None."""
        if not self.plots_cam:
            return None
        from mdreid.explain.explainer import Explainer

        return Explainer(pl_module, similarity, pl_module.device).match

    def on_test_end(self, trainer: L.Trainer, pl_module: ReIDModule) -> None:
        evaluation = pl_module.test_evaluation
        if not trainer.is_global_zero or evaluation is None:
            return
        datamodule = trainer.datamodule
        records = datamodule.eval_set.records if self.plots and datamodule is not None else None
        header = {"epoch": trainer.current_epoch, "global_step": trainer.global_step, **self.header}
        if self._validation is not None:
            header["validation"] = self._validation
        if self.protocol is not None:
            header["protocol"] = self._tested_protocol(trainer)
            summarize_protocol(trainer.loggers, header["protocol"])
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
