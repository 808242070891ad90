"""The one factory: the DataModule from the parsed ``data`` section (``DataConfig``), and the LightningModule
from a config, a checkpoint's saved hyper-parameters or an official MDReID file (all through
``ReIDModule.from_config``).

Every entry point, script, test and the notebook builds its objects here, so ``train``, ``eval`` and
``export`` stay leaves. A checkpoint (``mdreid.checkpoint``, opened once per entry point and passed down)
defines the network it holds: ``check_overrides`` refuses command-line values that contradict it, and
``adopt_architecture`` returns the config that builds its network and ``adopt_checkpoint_images`` the data
section that feeds it its images; a config is never changed in place.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig

from mdreid.checkpoint import Checkpoint, resolve_checkpoint
from mdreid.checkpoint.architecture import check_contradictions
from mdreid.checkpoint.state import key_mismatch, with_run_heads
from mdreid.config.given import given_anywhere, given_model_values, with_values
from mdreid.config.hydra import command_line_overrides
from mdreid.config.model import ModelSections
from mdreid.data.data_config import DataConfig
from mdreid.data.datamodule import MultiModalReIDDataModule
from mdreid.data.val_split import NONE, ValConfig
from mdreid.metrics.eval_config import EvalConfig
from mdreid.module import ReIDModule
from mdreid.official.reader import load_official, official_module
from mdreid.process.errors import MDReIDError

log = logging.getLogger(__name__)


def build_datamodule(data: DataConfig, validation: bool = True) -> MultiModalReIDDataModule:
    """The DataModule of the parsed ``data`` section, with the dataset prepared (synthetic data generated if
    configured). ``validation=False`` (evaluating a checkpoint) carves no validation split: scoring the test
    split needs no training split."""
    datamodule = MultiModalReIDDataModule(data if validation else replace(data, val=ValConfig(mode=NONE)))
    datamodule.prepare_data()
    return datamodule


def build_module(
    cfg: DictConfig,
    datamodule: Any,
    evaluation: EvalConfig | None = None,
    sections: ModelSections | None = None,
) -> ReIDModule:
    """The LightningModule of ``cfg.model`` (its ``_target_``: ReIDModule or a subclass) sized from the data:
    identities, cameras, junk rule; ``evaluation`` (an entry point's parsed ``eval`` section; by default
    ``cfg.eval``'s) sets the evaluation; ``sections``: ``cfg.model``'s typed sections where the entry point
    parsed them already."""
    cls = get_class(cfg.model._target_)
    return cls.from_config(
        cfg.model,
        num_classes=datamodule.num_classes,
        num_cameras=datamodule.num_cameras,
        junk=datamodule.junk_rule,
        evaluation=evaluation if evaluation is not None else EvalConfig.parse(cfg.eval),
        **({} if sections is None else {"sections": sections}),
    )


def _rebuilt(
    ckpt: Checkpoint, evaluation: EvalConfig | Mapping[str, Any] | None, junk: str | None
) -> ReIDModule:
    """The model of the checkpoint's saved hyper-parameters, without the backbone's ``weights`` file (the
    checkpoint holds every weight, and the CLIP file it was initialised from need not exist here), scored
    with this run's evaluation settings and junk rule where given."""
    hparams = {**ckpt.hparams, "backbone": ckpt.architecture().backbone}
    if evaluation is not None:
        hparams["evaluation"] = evaluation
    if junk is not None:
        hparams["junk"] = junk
    return ReIDModule.from_config(hparams)


def load_module(
    ckpt: str | Path | Checkpoint,
    model: ReIDModule | None = None,
    image_size: Sequence[int] | None = None,
    evaluation: EvalConfig | Mapping[str, Any] | None = None,
    junk: str | None = None,
    new_heads: bool = False,
) -> ReIDModule:
    """A checkpoint's weights, loaded strictly, in eval mode: into ``model`` (a fine-tuning run's, built from
    its config; ``new_heads`` keeps its own identity classifiers where the checkpoint's have another number of
    identities, ``mdreid.checkpoint.state.with_run_heads``) or, without one, into the model the checkpoint describes (its saved hyper-parameters, or for
    an official ``.pth`` its tensors' shapes; ``image_size`` then settles a grid the benchmark does not
    identify), scored with ``evaluation`` (an ``EvalConfig``, or the ``eval`` section it parses) and ``junk``
    where given.

    A checkpoint that does not fit fails with the list of mismatched keys instead of evaluating noise.
    """
    ckpt = ckpt if isinstance(ckpt, Checkpoint) else resolve_checkpoint(ckpt)
    if ckpt.official:
        if model is None:
            model = official_module(ckpt.converted, image_size, str(ckpt.path), evaluation, junk or "camera")
        load_official(model, ckpt.converted, str(ckpt.path), new_heads)
        return model.eval()
    if model is None:
        saved = list(ckpt.hparams["image_size"])
        if image_size is not None and list(image_size) != saved:
            raise MDReIDError(
                f"image_size={list(image_size)} contradicts the checkpoint's {saved} ({ckpt.path}); drop it: "
                "the checkpoint defines the model"
            )
        model = _rebuilt(ckpt, evaluation, junk)
    state = (
        with_run_heads(model.state_dict(), ckpt.state_dict, str(ckpt.path)) if new_heads else ckpt.state_dict
    )
    mismatch = key_mismatch(model.state_dict(), state)
    if mismatch:
        raise MDReIDError(
            f"checkpoint {ckpt.path} does not fit the configured model ({mismatch}); "
            "use the experiment/model overrides the checkpoint was trained with"
        )
    model.load_state_dict(state, strict=True)
    return model.eval()


def check_overrides(
    cfg: DictConfig,
    defined: Mapping[str, Any],
    source: str | Path,
    training: bool,
    overrides: Sequence[str] | None = None,
) -> None:
    """Refuse command-line model values (of ``overrides``, by default the running Hydra job's) that a
    checkpoint's ``defined`` values contradict (``check_contradictions``)."""
    overrides = command_line_overrides() if overrides is None else overrides
    check_contradictions(given_model_values(cfg, overrides), defined, source, training)


def adopt_architecture(
    cfg: DictConfig, ckpt: Checkpoint, overrides: Sequence[str] | None = None
) -> DictConfig:
    """``cfg`` made to build the network of ``ckpt`` (``init_from``, ``official convert``), as a new config:
    tower, tokens and input size come from the checkpoint; the loss, optimiser and schedule stay the run's own.
    A contradicting override (of ``overrides``, by default the running Hydra job's) is an error."""
    arch = ckpt.architecture(cfg.data.image_size)
    check_overrides(cfg, arch.values(), ckpt.path, training=False, overrides=overrides)
    values = {f"model.{k}": v for k, v in arch.model_values().items()}
    return with_values(cfg, {"data.image_size": list(arch.image_size), **values})


def adopt_checkpoint_images(cfg: DictConfig, data: DataConfig, ckpt: Checkpoint) -> DataConfig:
    """``data`` (``cfg``'s parsed ``data`` section) made to feed ``ckpt``, as a new value: images resized to
    the size the model was trained on and mapped with the high-bit-depth rule it was trained with (a
    command-line rule that contradicts that one is an error naming both; a checkpoint that records none leaves
    the config's). Command-line model values the checkpoint contradicts are refused first."""
    defined = ckpt.defined(data.image_size)
    check_overrides(cfg, defined, ckpt.path, training=True)
    rule = data.high_bit_depth
    trained = ckpt.image_rule
    if trained is not None:
        if given_anywhere(command_line_overrides(), "data.high_bit_depth") and rule != trained:
            raise MDReIDError(
                f"data.high_bit_depth asks for {rule.describe()}, but the checkpoint {ckpt.path} was trained "
                f"with {trained.describe()}; drop the override: images must reach the model as in training"
            )
        rule = trained
    return replace(data, image_size=tuple(defined["image_size"]), high_bit_depth=rule)


def check_cameras(model: ReIDModule, datamodule: Any, evaluation: EvalConfig) -> None:
    """Evaluation camera ids the camera embedding has no row for: an error naming the counts, or with
    ``eval.unseen_cameras=no_embedding`` those images get no camera embedding (as if SIE were off for them)."""
    known = int(model.hparams["num_cameras"])
    bench = datamodule.benchmark
    # each image once: RGBNT201's query and gallery are one list, and an image both query and gallery is one
    records = list({r.paths: r for r in (*bench.query, *bench.gallery)}.values())
    unseen = sorted({r.camid for r in records if r.camid >= known})
    if not unseen:
        return
    if evaluation.unseen_cameras == "error":
        raise MDReIDError(
            f"the evaluation data has camera ids {unseen[:8]} that the model never saw: its camera embedding "
            f"has {known} rows (ids 0..{known - 1}); set eval.unseen_cameras=no_embedding to evaluate those "
            "images without a camera embedding, or map their cameras onto the training ones"
        )
    n = sum(r.camid >= known for r in records)
    log.warning("%d evaluation images from %d unseen cameras get no camera embedding", n, len(unseen))
    model.known_cameras = known


def check_resumable(ckpt: Checkpoint, model: ReIDModule) -> None:
    """Refuse, in one line, a ``ckpt_path`` that Lightning could not resume training from: weights only
    (converted or official), or weights of another model or dataset."""
    if not ckpt.resumable:
        raise MDReIDError(
            f"ckpt_path={str(ckpt.path)!r} holds weights only, not a training state to resume; "
            f"start a new run from its weights with init_from={ckpt.path}"
        )
    mismatch = key_mismatch(model.state_dict(), ckpt.state_dict)
    if mismatch:
        raise MDReIDError(
            f"ckpt_path={str(ckpt.path)!r} does not fit the configured model ({mismatch}); "
            "resume with the experiment/model overrides the run was started with"
        )
