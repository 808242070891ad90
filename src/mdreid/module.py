"""The LightningModule: decoupled encoder + MML objective for training, any-to-any metric for evaluation.

Every constructor argument is a plain config value, saved with ``save_hyperparameters``, so a checkpoint
alone is enough to rebuild the model (``mdreid.factory.load_module``: the saved hyper-parameters with
the backbone's ``weights`` path dropped, since the checkpoint already holds every weight). The ``model.mdl``,
``model.loss``, ``model.optim`` and ``model.schedule`` sections are read here as typed dataclasses
(:func:`mdreid.config.model.model_sections`); ``model.backbone`` by the network that builds the tower.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.warnings import PossibleUserWarning

from mdreid.config.model import ModelSections, model_sections
from mdreid.config.sections import plain
from mdreid.data.batch import Batch
from mdreid.losses.objective import MDReIDObjective
from mdreid.metrics import AnyToAnyReID, AnyToAnyResult, Evaluation
from mdreid.metrics.any_to_any import SAMPLE_KEYS
from mdreid.metrics.eval_config import EvalConfig
from mdreid.modalities import MODALITIES
from mdreid.models.mdreid_net import MDReIDNet
from mdreid.models.net_output import NetOutput
from mdreid.optim.lr_schedule import build_scheduler
from mdreid.optim.param_groups import build_param_groups
from mdreid.process.errors import MDReIDError

# Lightning's PossibleUserWarning for an epoch-level value logged without sync_dist, for the evaluation keys
SYNCED_SCORES_ADVICE = re.escape("It is recommended to use `self.log('") + r"(val|test)/"


class ReIDModule(L.LightningModule):
    """Trains MDReID (or the single-token baseline) and evaluates every query/gallery modality pair.

    The sizes the data fixes (identities, cameras) come first, then the model config's sections, the network's
    (``backbone``, ``image_size``, ``sie_coe``, ``mdl``) and the training's (``loss``, ``optim``, ``schedule``).
    """

    def __init__(
        self,
        num_classes: int,
        num_cameras: int,
        backbone: Mapping[str, Any],
        image_size: Sequence[int],
        sie_coe: float = 1.0,
        mdl: Mapping[str, Any] | None = None,
        loss: Mapping[str, Any] | None = None,
        optim: Mapping[str, Any] | None = None,
        schedule: Mapping[str, Any] | None = None,
        evaluation: EvalConfig | Mapping[str, Any] | None = None,
        junk: str = "camera",
        sections: ModelSections | None = None,
    ) -> None:
        super().__init__()
        args = {k: plain(v) for k, v in locals().items() if k not in ("self", "__class__", "sections")}
        evaluation = EvalConfig.parse(evaluation)
        args["evaluation"] = evaluation.plain()  # checkpoints hold plain data only
        self.save_hyperparameters(args)
        # ``sections``: the typed form of mdl, loss, optim and schedule where the caller parsed them already
        sections = sections if sections is not None else model_sections(args)
        self.net = MDReIDNet(
            backbone=args["backbone"],
            num_classes=num_classes,
            num_cameras=num_cameras,
            image_size=tuple(image_size),
            sie_coe=sie_coe,
            tie_tokens=sections.mdl.tie_tokens,
            decoupled=sections.mdl.decoupled,
        )
        self.objective = MDReIDObjective(sections.loss)
        self.optim_cfg = sections.optim
        self.schedule_cfg = sections.schedule
        self.val_metric = evaluation.build_metric(junk)
        self.test_metric = evaluation.build_metric(junk)
        self._test_evaluation: Evaluation | None = None
        # set by ``check_cameras``: evaluation camera ids from here on get no camera embedding
        self.known_cameras: int | None = None
        self._scheduler = None

    @classmethod
    def from_config(cls, model: Mapping[str, Any], **fixed: Any) -> ReIDModule:
        """The one way a module is built, whatever the source: a ``model`` config section (Hydra's, a
        checkpoint's saved hyper-parameters, or the sizes an official file's tensors imply; ``_target_`` is
        ignored) plus what the data or the checkpoint fixes (``num_classes``, ``num_cameras``, ``junk``,
        ``evaluation``), which wins over the section; ``sections`` (``model_sections`` of that same section)
        where the caller parsed it already."""
        spec = {k: v for k, v in plain(model).items() if k != "_target_"}
        return cls(**{**spec, **fixed})

    # ----------------------------------------------------------------------------------------- training
    def forward(self, batch: Batch) -> NetOutput:
        images = {m: batch[m] for m in MODALITIES}
        return self.net(images, batch["present"], batch["camid"])

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        losses = self.objective(self(batch), batch["label"])
        # every rank takes the same decision, so a DDP run stops instead of hanging in the next all-reduce
        if self.trainer.strategy.reduce_boolean_decision(not bool(torch.isfinite(losses["loss"])), all=False):
            raise self._stop(f"non-finite loss ({losses['loss'].item()})")
        bs = batch["label"].shape[0]
        logged = {f"train/{k}": v.detach() for k, v in losses.items()}
        # each rank averages its own batches: the epoch value is reduced over ranks (one small all-reduce per
        # term and step, as Lightning syncs the step value too), so it does not depend on the world size
        self.log_dict(logged, batch_size=bs, on_step=True, on_epoch=True, prog_bar=False, sync_dist=True)
        # the progress line: the total and your own terms (every term is in the loggers above)
        shown = {k: losses[k].detach() for k in ("loss", *self.objective.config.extra_terms)}
        self.log_dict(shown, batch_size=bs, prog_bar=True, logger=False)
        return losses["loss"]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Never overwrite the last good checkpoint with diverged weights (an optimizer step can produce them
        while the loss that led to it was still finite)."""
        weights = [v for v in checkpoint["state_dict"].values() if v.is_floating_point()]
        if not all(bool(torch.isfinite(v).all()) for v in weights):
            raise self._stop("non-finite weights")

    def _stop(self, what: str) -> MDReIDError:
        """The error that ends a diverged run; Lightning saves nothing on an exception, so checkpoints stay good."""
        callback = self.trainer.checkpoint_callback
        # ModelCheckpoint records a path before writing it, so only files that exist count
        candidates = (
            getattr(callback, "last_model_path", ""),  # written by this run (save_last)
            self.trainer.ckpt_path,  # resumed from
            getattr(callback, "best_model_path", ""),
        )
        kept = next((str(c) for c in candidates if c and Path(c).is_file()), "none written yet")
        return MDReIDError(
            f"{what} at global step {self.global_step} (epoch {self.current_epoch}): training stopped without "
            f"saving this state; last good checkpoint (kept): {kept}; lower model.optim.base_lr or check the "
            "data, then resume from it with ckpt_path=..."
        )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        groups = build_param_groups(self.net.named_parameters(), self.optim_cfg)
        optimizer = torch.optim.Adam(groups, lr=self.optim_cfg.base_lr, betas=(0.9, 0.999), eps=1e-8)
        self._scheduler = build_scheduler(optimizer, self.optim_cfg.base_lr, self.schedule_cfg)
        return optimizer

    def on_train_epoch_start(self) -> None:
        """Official timing: the LR of 1-based epoch e is set at its start (docs/method.md §4.4)."""
        if self._scheduler is None:
            return
        self._scheduler.step(self.current_epoch + 1)
        for group in self.trainer.optimizers[0].param_groups:
            # the same value on every rank; syncing it once per epoch costs nothing
            self.log(f"lr/{group['name']}", group["lr"], on_step=False, on_epoch=True, sync_dist=True)

    # --------------------------------------------------------------------------------------- evaluation
    def _update_metric(self, metric: AnyToAnyReID, batch: Batch) -> None:
        images = {m: batch[m] for m in MODALITIES}
        camid = batch["camid"]
        if self.known_cameras is not None:
            camid = camid.masked_fill(camid >= self.known_cameras, -1)
        sp, sh = self.net.extract(images, batch["present"], camid)
        if sh is None:  # single-token baseline: its one feature is compared across modalities, like sh
            sp, sh = None, sp
        metric.update(sp=sp, sh=sh, index=batch["index"], **{key: batch[key] for key in SAMPLE_KEYS})

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._update_metric(self.val_metric, batch)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._update_metric(self.test_metric, batch)

    def setup(self, stage: str) -> None:
        # Runs in every process, spawned ones included. The evaluation scalars come from AnyToAnyReID, which
        # gathers every rank's samples before computing, so every rank logs identical numbers and averaging
        # them again (~270 all-reduces per evaluation) would change nothing; Lightning's advice to do so for
        # exactly these keys is filtered out, and any other unsynced epoch value still warns.
        warnings.filterwarnings("ignore", message=SYNCED_SCORES_ADVICE, category=PossibleUserWarning)

    def _log_scores(self, result: AnyToAnyResult, prefix: str) -> None:
        self.log_dict(result.scalars(prefix), sync_dist=False)

    def on_validation_epoch_end(self) -> None:
        self._log_scores(self.val_metric.compute(), "val")
        self.val_metric.reset()

    def on_test_epoch_end(self) -> None:
        self._test_evaluation = self.test_metric.evaluate()
        self.test_metric.reset()
        self._log_scores(self._test_evaluation.result, "test")

    @property
    def test_evaluation(self) -> Evaluation | None:
        """The last test epoch's scores and samples (every rank holds the same); None before any test."""
        return self._test_evaluation

    def evaluate(self, trainer: L.Trainer, datamodule: L.LightningDataModule) -> Evaluation:
        """Test on ``datamodule`` and return the evaluation: scores of every pair and the samples for plots."""
        trainer.test(self, datamodule=datamodule, verbose=False)
        if self._test_evaluation is None:
            raise MDReIDError(
                "the test ran in other processes (strategy=ddp_spawn), so its evaluation is not here; use a "
                "strategy that runs in this process, or read metrics.json written by PublishResults"
            )
        return self._test_evaluation
