"""The objects every entry point, script and the notebook build the same way: the DataModule and the
LightningModule from a composed config, and a model from a checkpoint.

A checkpoint is either an mdreid Lightning checkpoint or a state dict of the official MDReID code (the
released ``.pth`` files, see docs/official_checkpoints.md); ``load_module`` tells them apart by their keys.
Entry points share these instead of importing each other, so ``train``, ``eval`` and ``export`` stay leaves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from mdreid.models.official_layout import (
    Converted,
    convert_official,
    describe_mismatch,
    find_state_dict,
    official_name,
    resolve_image_size,
)
from mdreid.module import ReIDModule
from mdreid.runtime.checkpoints import Checkpoint, resolve_checkpoint
from mdreid.runtime.config_sections import plain
from mdreid.runtime.errors import MDReIDError
from mdreid.runtime.hydra import command_line_overrides, override_key

log = logging.getLogger(__name__)

# keys named per kind of mismatch in the error of a checkpoint that does not fit
_LISTED_KEYS = 5
# the hyper-parameters that fix the network a checkpoint's weights belong to (besides the head sizes)
ARCHITECTURE = ("backbone", "mdl", "sie_coe")
# backbone keys about where the starting weights come from, not what the network is
_NOT_ARCHITECTURE = ("backbone.weights", "backbone.allow_random_init")
# eval.unseen_cameras: what happens to evaluation images whose camera the model has no embedding for
UNSEEN_CAMERAS = ("error", "no_embedding")


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


def saved_hparams(ckpt: Checkpoint) -> dict[str, Any]:
    """The model hyper-parameters an mdreid checkpoint was written with."""
    hparams = ckpt.payload.get(ReIDModule.CHECKPOINT_HYPER_PARAMS_KEY)
    if not isinstance(hparams, dict) or not isinstance(hparams.get("backbone"), dict):
        raise MDReIDError(
            f"ckpt_path={str(ckpt.path)!r} has no model hyper-parameters; use a checkpoint written by mdreid.train"
        )
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
            "mdl": {"enabled": True, "tie_tokens": layout.tie_tokens},
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


def check_overrides(cfg: DictConfig, saved: Mapping[str, Any], source: str | Path, training: bool) -> None:
    """Refuse command-line model values the checkpoint contradicts, naming both: the checkpoint defines the
    model, so ``model.backbone.vision.heads=4`` on a 2-head checkpoint would otherwise evaluate another net.

    ``saved`` holds the checkpoint's model hyper-parameters (``image_size`` included). Group choices such
    as ``model=baseline`` are compared on the architecture; with ``training`` (evaluation) explicit
    ``model.loss.*`` / ``model.optim.*`` values are compared too, since a fine-tuning run sets those anew.
    """
    flat = {k: _plain(v) for k, v in _leaves(saved, "").items()}
    given: dict[str, Any] = {}
    for override in command_line_overrides():
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


def _rebuilt(ckpt: Checkpoint, evaluation: Mapping[str, Any] | None, junk: str | None) -> ReIDModule:
    """The model of the checkpoint's saved hyper-parameters, without the backbone's ``weights`` file (the
    checkpoint holds every weight, and the CLIP file it was initialised from need not exist here), scored
    with this run's evaluation settings and junk rule where given."""
    hparams = {**saved_hparams(ckpt), "backbone": architecture(ckpt)["backbone"]}
    if evaluation is not None:
        hparams["evaluation"] = evaluation
    if junk is not None:
        hparams["junk"] = junk
    return ReIDModule(**hparams)


def _mismatch(
    own: dict[str, torch.Tensor], state: Mapping[str, torch.Tensor], name: Callable[[str], str] = str
) -> str:
    """``missing: ...; unexpected: ...; shape mismatch: ...`` (the kinds that occur), or empty when they fit.
    ``name`` turns a key into the name the user's file gives it."""
    kinds = (
        ("missing", sorted(set(own) - set(state))),
        ("unexpected", sorted(set(state) - set(own))),
        ("shape mismatch", sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)),
    )
    parts = []
    for label, keys in kinds:
        if keys:
            more = f" (+{len(keys) - _LISTED_KEYS} more)" if len(keys) > _LISTED_KEYS else ""
            parts.append(f"{label}: {', '.join(name(k) for k in keys[:_LISTED_KEYS])}{more}")
    return "; ".join(parts)


def read_official(ckpt: Checkpoint) -> Converted:
    """An official MDReID state dict (plain, or under ``model`` / ``state_dict``) renamed to mdreid keys."""
    return convert_official(find_state_dict(ckpt.payload) or {}, str(ckpt.path))


def official_module(
    converted: Converted,
    image_size: Sequence[int] | None,
    source: str,
    evaluation: Mapping[str, Any] | None = None,
    junk: str = "camera",
) -> ReIDModule:
    """The ``ReIDModule`` an official checkpoint describes (sizes from its tensors), weights not yet loaded."""
    layout = converted.layout
    return ReIDModule(
        backbone=layout.backbone(),
        num_classes=layout.num_classes,
        num_cameras=layout.num_cameras,
        image_size=resolve_image_size(layout, image_size, source),
        mdl={"enabled": True, "tie_tokens": layout.tie_tokens},
        evaluation=evaluation,
        junk=junk,
    )


def load_official(model: ReIDModule, converted: Converted, source: str) -> None:
    """Fill ``model`` from an official checkpoint; sizes that contradict it are named before any key list."""
    net, layout = model.net, converted.layout
    if not net.decoupled:
        raise MDReIDError(f"{source} holds the decoupled MDReID model; evaluate it with model=mdreid")
    if (net.mdl.shared_token is None) != layout.tie_tokens:
        raise MDReIDError(
            f"{source}: its shared token is {'' if layout.tie_tokens else 'not '}tied to the class token; "
            f"set model.mdl.tie_tokens={str(layout.tie_tokens).lower()}"
        )
    grid = net.mdl.encoder.positional_embedding.shape[0] - net.mdl.num_tokens
    contradiction = describe_mismatch(
        layout, model.hparams["num_classes"], model.hparams["num_cameras"], grid
    )
    if contradiction:
        raise MDReIDError(f"checkpoint {source} does not fit the configured model: {contradiction}")
    mismatch = _mismatch(model.state_dict(), converted.state, official_name)
    if mismatch:
        raise MDReIDError(
            f"checkpoint {source} does not fit the configured model ({mismatch}); "
            "use the experiment/model overrides of the benchmark it was trained on"
        )
    model.load_state_dict(converted.state, strict=True)
    log.info(
        "official checkpoint %s: %d tensors loaded; dropped %d that never enter the loss or repeat another: %s",
        source,
        len(converted.state),
        len(converted.unused),
        ", ".join(converted.unused) or "none",
    )


def load_module(
    ckpt: str | Path | Checkpoint,
    model: ReIDModule | None = None,
    image_size: Sequence[int] | None = None,
    evaluation: Mapping[str, Any] | None = None,
    junk: str | None = None,
) -> ReIDModule:
    """A checkpoint's weights, loaded strictly, in eval mode: into ``model`` (a fine-tuning run's, built from
    its config) or, without one, into the model the checkpoint describes (its saved hyper-parameters, or for
    an official ``.pth`` its tensors' shapes; ``image_size`` then settles a grid the benchmark does not
    identify), scored with ``evaluation`` and ``junk`` where given.

    A checkpoint that does not fit fails with the list of mismatched keys instead of evaluating noise.
    """
    ckpt = ckpt if isinstance(ckpt, Checkpoint) else resolve_checkpoint(ckpt)
    if ckpt.official:
        converted = read_official(ckpt)
        if model is None:
            model = official_module(converted, image_size, str(ckpt.path), evaluation, junk or "camera")
        load_official(model, converted, str(ckpt.path))
        return model.eval()
    if model is None:
        if image_size is not None and list(image_size) != list(saved_hparams(ckpt)["image_size"]):
            raise MDReIDError(
                f"image_size={list(image_size)} contradicts the checkpoint's "
                f"{list(saved_hparams(ckpt)['image_size'])} ({ckpt.path}); drop it: the checkpoint defines the model"
            )
        model = _rebuilt(ckpt, evaluation, junk)
    mismatch = _mismatch(model.state_dict(), ckpt.state_dict)
    if mismatch:
        raise MDReIDError(
            f"checkpoint {ckpt.path} does not fit the configured model ({mismatch}); "
            "use the experiment/model overrides the checkpoint was trained with"
        )
    model.load_state_dict(ckpt.state_dict, strict=True)
    return model.eval()


def adopt_architecture(cfg: DictConfig, ckpt: Checkpoint) -> None:
    """Make ``cfg`` build the network of ``ckpt`` (``init_from``): tower, tokens and input size come from the
    checkpoint; the loss, optimiser and schedule stay the run's own. A contradicting override is an error."""
    arch = architecture(ckpt, cfg.data.get("image_size"))
    check_overrides(cfg, arch, ckpt.path, training=False)
    with open_dict(cfg):
        cfg.data.image_size = arch.pop("image_size")
        for key, value in arch.items():
            cfg.model[key] = value


def check_cameras(model: ReIDModule, datamodule: Any, policy: str) -> None:
    """Evaluation camera ids the camera embedding has no row for: an error naming the counts, or with
    ``policy="no_embedding"`` those images get no camera embedding (as if SIE were off for them)."""
    known = int(model.hparams["num_cameras"])
    records = [*datamodule.benchmark.query, *datamodule.benchmark.gallery]
    unseen = sorted({r.camid for r in records if r.camid >= known})
    if policy not in UNSEEN_CAMERAS:
        raise MDReIDError(f"eval.unseen_cameras={policy!r}: use one of {', '.join(UNSEEN_CAMERAS)}")
    if not unseen:
        return
    if policy == "error":
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
    mismatch = _mismatch(model.state_dict(), ckpt.state_dict)
    if mismatch:
        raise MDReIDError(
            f"ckpt_path={str(ckpt.path)!r} does not fit the configured model ({mismatch}); "
            "resume with the experiment/model overrides the run was started with"
        )
