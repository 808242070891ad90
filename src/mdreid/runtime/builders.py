"""The objects every entry point, script and the notebook build the same way: the DataModule and the
LightningModule from a composed config, and a model from a checkpoint.

Entry points share these instead of importing each other, so ``train``, ``eval`` and ``export`` stay leaves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from mdreid.module import ReIDModule
from mdreid.runtime.errors import MDReIDError

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


def _read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint as a dict, memory-mapped so that only the weights actually copied are read."""
    if not path.is_file():
        raise MDReIDError(
            f"ckpt_path={str(path)!r} does not exist; point it at a .ckpt file written by mdreid.train"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
        raise MDReIDError(
            f"ckpt_path={str(path)!r} is not a readable checkpoint ({type(err).__name__}: {err})"
        ) from err
    return ckpt if isinstance(ckpt, dict) else {}


def _rebuilt(ckpt: dict[str, Any], path: Path) -> ReIDModule:
    """The model of the checkpoint's saved hyper-parameters, without the backbone's ``weights`` file: the
    checkpoint holds every weight, and the CLIP file it was initialised from need not exist here."""
    hparams = ckpt.get(ReIDModule.CHECKPOINT_HYPER_PARAMS_KEY)
    if not isinstance(hparams, dict) or not isinstance(hparams.get("backbone"), dict):
        raise MDReIDError(
            f"ckpt_path={str(path)!r} has no model hyper-parameters; use a checkpoint written by mdreid.train"
        )
    return ReIDModule(**{**hparams, "backbone": {**hparams["backbone"], "weights": None}})


def _mismatch(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> str:
    """``missing: ...; unexpected: ...; shape mismatch: ...`` (the kinds that occur), or empty when they fit."""
    kinds = (
        ("missing", sorted(set(own) - set(state))),
        ("unexpected", sorted(set(state) - set(own))),
        ("shape mismatch", sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)),
    )
    parts = []
    for label, keys in kinds:
        if keys:
            more = f" (+{len(keys) - _LISTED_KEYS} more)" if len(keys) > _LISTED_KEYS else ""
            parts.append(f"{label}: {', '.join(keys[:_LISTED_KEYS])}{more}")
    return "; ".join(parts)


def load_module(ckpt_path: str | Path, model: ReIDModule | None = None) -> ReIDModule:
    """A checkpoint's weights, loaded strictly, in eval mode: into ``model`` (built from the run's config)
    or, without one, into the model its saved hyper-parameters describe.

    A checkpoint that does not fit fails with the list of mismatched keys instead of evaluating noise.
    """
    path = Path(ckpt_path)
    ckpt = _read_checkpoint(path)
    model = _rebuilt(ckpt, path) if model is None else model
    state = ckpt.get("state_dict")
    if state is None:
        raise MDReIDError(
            f"ckpt_path={str(path)!r} has no 'state_dict'; use a checkpoint written by mdreid.train"
        )
    mismatch = _mismatch(model.state_dict(), state)
    if mismatch:
        raise MDReIDError(
            f"checkpoint {path} does not fit the configured model ({mismatch}); "
            "use the experiment/model overrides the checkpoint was trained with"
        )
    model.load_state_dict(state, strict=True)
    return model.eval()
