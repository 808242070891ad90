"""The one factory: the DataModule from a config, and the LightningModule from a config, a checkpoint's saved
hyper-parameters or an official MDReID file (all through ``ReIDModule.from_config``).

Every entry point, script, test and the notebook builds its objects here, so ``train``, ``eval`` and
``export`` stay leaves. A checkpoint defines the network it holds: ``architecture`` says what it fixes,
``check_overrides`` refuses command-line values that contradict it, and ``adopt_architecture`` makes a
fine-tuning config build it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from mdreid.checkpoints import Checkpoint, key_mismatch, resolve_checkpoint, with_run_heads
from mdreid.config.hydra import command_line_overrides, override_key
from mdreid.data.bit_depth import BitDepthRule
from mdreid.metrics.eval_config import EvalConfig
from mdreid.module import ReIDModule
from mdreid.official.layout import resolve_image_size
from mdreid.official.reader import load_official, official_module, read_official
from mdreid.process.errors import MDReIDError
from mdreid.runtime.config_sections import plain

log = logging.getLogger(__name__)

# the hyper-parameters that fix the network a checkpoint's weights belong to (besides the head sizes)
ARCHITECTURE = ("backbone", "mdl", "sie_coe")
# backbone keys about where the starting weights come from, not what the network is
_NOT_ARCHITECTURE = ("backbone.weights", "backbone.allow_random_init")


def build_datamodule(cfg: DictConfig, validation: bool = True) -> L.LightningDataModule:
    """The DataModule, with the dataset prepared (synthetic data generated if configured). ``validation=False``
    (evaluating a checkpoint) carves no validation split: scoring the test split needs no training split."""
    datamodule = instantiate(cfg.data, **({} if validation else {"val": "none"}))
    datamodule.prepare_data()
    return datamodule


def build_module(cfg: DictConfig, datamodule: Any, evaluation: EvalConfig | None = None) -> ReIDModule:
    """The LightningModule of ``cfg.model`` (its ``_target_``: ReIDModule or a subclass) sized from the data:
    identities, cameras, junk rule; ``evaluation`` (an entry point's parsed ``eval`` section; by default
    ``cfg.eval``'s) sets the evaluation."""
    cls = get_class(cfg.model._target_)
    return cls.from_config(
        cfg.model,
        num_classes=datamodule.num_classes,
        num_cameras=datamodule.num_cameras,
        junk=datamodule.junk_rule,
        evaluation=evaluation if evaluation is not None else EvalConfig.parse(cfg.eval),
    )


def saved_hparams(ckpt: Checkpoint) -> dict[str, Any]:
    """The model hyper-parameters an mdreid checkpoint was written with, in today's key names: a checkpoint
    written before ``model.mdl.enabled`` was renamed ``model.mdl.decoupled`` says ``enabled``."""
    hparams = ckpt.payload.get(ReIDModule.CHECKPOINT_HYPER_PARAMS_KEY)
    if not isinstance(hparams, dict) or not isinstance(hparams.get("backbone"), dict):
        raise MDReIDError(
            f"ckpt_path={str(ckpt.path)!r} has no model hyper-parameters; use a checkpoint written by mdreid.train"
        )
    mdl = hparams.get("mdl")
    if isinstance(mdl, dict) and "enabled" in mdl and "decoupled" not in mdl:
        mdl = {("decoupled" if k == "enabled" else k): v for k, v in mdl.items()}
        hparams = {**hparams, "mdl": mdl}
    return hparams


def architecture(ckpt: Checkpoint, image_size: Sequence[int] | None = None) -> dict[str, Any]:
    """What a checkpoint fixes about the model: tower, tokens, camera-embedding scale, input size (H, W).

    An mdreid checkpoint says so in its saved hyper-parameters; an official ``.pth`` in its tensors' shapes,
    with ``image_size`` settling an input size the benchmark it was trained on does not identify.
    """
    if ckpt.official:
        layout = read_official(ckpt).layout
        size = resolve_image_size(layout, image_size, str(ckpt.path))
        return {
            "backbone": layout.backbone(),
            "mdl": {"decoupled": True, "tie_tokens": layout.tie_tokens},
            "image_size": list(size),
        }
    hparams = saved_hparams(ckpt)
    arch = {k: hparams[k] for k in ARCHITECTURE if hparams.get(k) is not None}
    arch["backbone"] = {**arch["backbone"], "weights": None}  # every weight comes from the checkpoint
    arch["image_size"] = list(hparams["image_size"])
    return arch


def _leaves(node: Any, prefix: str) -> dict[str, Any]:
    """``{"backbone.vision.heads": 2, ...}`` of a nested mapping (lists are leaves)."""
    if not isinstance(node, Mapping):
        return {prefix: node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        out.update(_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _plain(value: Any) -> Any:
    value = plain(value)
    return list(value) if isinstance(value, tuple) else value


def check_overrides(
    cfg: DictConfig,
    saved: Mapping[str, Any],
    source: str | Path,
    training: bool,
    overrides: Sequence[str] | None = None,
) -> None:
    """Refuse command-line model values the checkpoint contradicts, naming both: the checkpoint defines the
    model, so ``model.backbone.vision.heads=4`` on a 2-head checkpoint would otherwise evaluate another net.

    ``saved`` holds the checkpoint's model hyper-parameters (``image_size`` included). Group choices such
    as ``model=baseline`` are compared on the architecture; with ``training`` (evaluation) explicit
    ``model.loss.*`` / ``model.optim.*`` values are compared too, since a fine-tuning run sets those anew.
    ``overrides``: the command line's overrides, by default the running Hydra job's.
    """
    flat = {k: _plain(v) for k, v in _leaves(saved, "").items()}
    given: dict[str, Any] = {}
    for override in command_line_overrides() if overrides is None else overrides:
        key = override_key(override)
        if key in ("data.image_size", "model.image_size"):
            given["image_size"] = _plain(cfg.data.image_size)
        elif key.startswith("model."):
            given.update(_leaves(_plain(OmegaConf.select(cfg, key)), key.removeprefix("model.")))
        elif key == "model" or key.startswith("model/"):
            group = key.replace("/", ".").removeprefix("model").lstrip(".")
            node = _plain(OmegaConf.select(cfg, f"model.{group}" if group else "model"))
            arch = {k: v for k, v in _leaves(node, group).items() if k.split(".")[0] in ARCHITECTURE}
            given.update(arch)
    wrong = []
    for key, value in sorted(given.items()):
        section = key.split(".")[0]
        if key in _NOT_ARCHITECTURE or not (training or section in (*ARCHITECTURE, "image_size")):
            continue
        name = "data.image_size" if key == "image_size" else f"model.{key}"
        if key not in flat:
            wrong.append(f"{name}={value!r} (the checkpoint does not record it)")
        elif value != flat[key]:
            wrong.append(f"{name}={value!r} (the checkpoint has {flat[key]!r})")
    if wrong:
        raise MDReIDError(
            f"the command line contradicts the checkpoint {source}: {'; '.join(wrong)}; the checkpoint defines "
            "the model: drop these overrides"
        )


def _rebuilt(
    ckpt: Checkpoint, evaluation: EvalConfig | Mapping[str, Any] | None, junk: str | None
) -> ReIDModule:
    """The model of the checkpoint's saved hyper-parameters, without the backbone's ``weights`` file (the
    checkpoint holds every weight, and the CLIP file it was initialised from need not exist here), scored
    with this run's evaluation settings and junk rule where given."""
    hparams = {**saved_hparams(ckpt), "backbone": architecture(ckpt)["backbone"]}
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
    identities, ``checkpoints.with_run_heads``) or, without one, into the model the checkpoint describes (its saved hyper-parameters, or for
    an official ``.pth`` its tensors' shapes; ``image_size`` then settles a grid the benchmark does not
    identify), scored with ``evaluation`` (an ``EvalConfig``, or the ``eval`` section it parses) and ``junk``
    where given.

    A checkpoint that does not fit fails with the list of mismatched keys instead of evaluating noise.
    """
    ckpt = ckpt if isinstance(ckpt, Checkpoint) else resolve_checkpoint(ckpt)
    if ckpt.official:
        converted = read_official(ckpt)
        if model is None:
            model = official_module(converted, image_size, str(ckpt.path), evaluation, junk or "camera")
        load_official(model, converted, str(ckpt.path), new_heads)
        return model.eval()
    if model is None:
        if image_size is not None and list(image_size) != list(saved_hparams(ckpt)["image_size"]):
            raise MDReIDError(
                f"image_size={list(image_size)} contradicts the checkpoint's "
                f"{list(saved_hparams(ckpt)['image_size'])} ({ckpt.path}); drop it: the checkpoint defines the model"
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


def adopt_architecture(cfg: DictConfig, ckpt: Checkpoint, overrides: Sequence[str] | None = None) -> None:
    """Make ``cfg`` build the network of ``ckpt`` (``init_from``, ``official convert``): tower, tokens and
    input size come from the checkpoint; the loss, optimiser and schedule stay the run's own. A contradicting
    override (of ``overrides``, by default the running Hydra job's) is an error."""
    arch = architecture(ckpt, cfg.data.image_size)
    check_overrides(cfg, arch, ckpt.path, training=False, overrides=overrides)
    with open_dict(cfg):
        cfg.data.image_size = arch.pop("image_size")
        for key, value in arch.items():
            cfg.model[key] = value


def trained_image_rule(ckpt: Checkpoint) -> BitDepthRule | None:
    """The high-bit-depth rule the checkpoint was trained with (its DataModule's saved ``high_bit_depth``);
    None when it records none (an official ``.pth``, or a checkpoint written without a DataModule)."""
    saved = ckpt.payload.get("datamodule_hyper_parameters") if not ckpt.official else None
    if not isinstance(saved, Mapping) or "high_bit_depth" not in saved:
        return None
    return BitDepthRule.from_config(saved["high_bit_depth"])


def adopt_image_rule(cfg: DictConfig, ckpt: Checkpoint) -> None:
    """Evaluate with the high-bit-depth rule the checkpoint was trained with (``trained_image_rule``):
    images must reach the model as they did in training. A command-line rule that contradicts it is an
    error naming both; a checkpoint that does not record one leaves the config's."""
    trained = trained_image_rule(ckpt)
    if trained is None:
        return
    given = any(override_key(o).startswith("data.high_bit_depth") for o in command_line_overrides())
    asked = BitDepthRule.from_config(cfg.data.high_bit_depth)
    if given and asked != trained:
        raise MDReIDError(
            f"data.high_bit_depth asks for {asked.describe()}, but the checkpoint {ckpt.path} was trained with "
            f"{trained.describe()}; drop the override: images must reach the model as in training"
        )
    with open_dict(cfg):
        cfg.data.high_bit_depth = {
            "mode": trained.mode,
            "range": list(trained.range) if trained.range else None,
        }


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
