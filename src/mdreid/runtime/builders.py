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
from omegaconf import DictConfig

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
from mdreid.runtime.errors import MDReIDError

log = logging.getLogger(__name__)

# keys named per kind of mismatch in the error of a checkpoint that does not fit
_LISTED_KEYS = 5


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


def _rebuilt(ckpt: Checkpoint) -> ReIDModule:
    """The model of the checkpoint's saved hyper-parameters, without the backbone's ``weights`` file: the
    checkpoint holds every weight, and the CLIP file it was initialised from need not exist here."""
    hparams = ckpt.payload.get(ReIDModule.CHECKPOINT_HYPER_PARAMS_KEY)
    if not isinstance(hparams, dict) or not isinstance(hparams.get("backbone"), dict):
        raise MDReIDError(
            f"ckpt_path={str(ckpt.path)!r} has no model hyper-parameters; use a checkpoint written by mdreid.train"
        )
    return ReIDModule(**{**hparams, "backbone": {**hparams["backbone"], "weights": None}})


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


def official_module(converted: Converted, image_size: Sequence[int] | None, source: str) -> ReIDModule:
    """The ``ReIDModule`` an official checkpoint describes (sizes from its tensors), weights not yet loaded."""
    layout = converted.layout
    return ReIDModule(
        backbone=layout.backbone(),
        num_classes=layout.num_classes,
        num_cameras=layout.num_cameras,
        image_size=resolve_image_size(layout, image_size, source),
        mdl={"enabled": True, "tie_tokens": layout.tie_tokens},
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
    ckpt: str | Path | Checkpoint, model: ReIDModule | None = None, image_size: Sequence[int] | None = None
) -> ReIDModule:
    """A checkpoint's weights, loaded strictly, in eval mode: into ``model`` (built from the run's config)
    or, without one, into the model the checkpoint describes (its saved hyper-parameters, or for an official
    ``.pth`` its tensors' shapes; ``image_size`` then settles a grid the benchmark does not identify).

    A checkpoint that does not fit fails with the list of mismatched keys instead of evaluating noise.
    """
    ckpt = ckpt if isinstance(ckpt, Checkpoint) else resolve_checkpoint(ckpt)
    if ckpt.official:
        converted = read_official(ckpt)
        model = official_module(converted, image_size, str(ckpt.path)) if model is None else model
        load_official(model, converted, str(ckpt.path))
        return model.eval()
    model = _rebuilt(ckpt) if model is None else model
    mismatch = _mismatch(model.state_dict(), ckpt.state_dict)
    if mismatch:
        raise MDReIDError(
            f"checkpoint {ckpt.path} does not fit the configured model ({mismatch}); "
            "use the experiment/model overrides the checkpoint was trained with"
        )
    model.load_state_dict(ckpt.state_dict, strict=True)
    return model.eval()


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
