"""Opening a checkpoint file: ``resolve_checkpoint`` is the one door train, eval and export go through.

The file is read as data, never as code (``mdreid.files.safe_load``). It tells an mdreid Lightning
checkpoint from an official MDReID ``.pth`` (docs/official_checkpoints.md), and turns every ordinary mistake into one line naming the key and the file: a missing path, a folder, a
truncated or foreign file, NaN weights. Whether the weights fit a model is checked where the model is known
(``key_mismatch``, by ``mdreid.factory`` and ``mdreid.official.reader``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mdreid.files.safe_load import TRUST_HINT, load_torch_file
from mdreid.process.errors import MDReIDError

log = logging.getLogger(__name__)

_LISTED = 4
# keys named per kind of mismatch in the error of a checkpoint that does not fit
_LISTED_KEYS = 5
# entries of a dict that may hold the state dict of another code base (official MDReID files use both)
_WRAPPERS = ("model", "state_dict")


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint file, read once (memory-mapped where the format allows)."""

    path: Path
    payload: Any  # what torch.load returned
    official: bool  # an official MDReID state dict rather than an mdreid Lightning checkpoint
    epoch: int | None  # training epochs completed when it was written; None if the file does not say
    global_step: int | None

    @property
    def resumable(self) -> bool:
        """Whether Lightning can continue training from it (it holds the optimiser state)."""
        return not self.official and "optimizer_states" in self.payload

    @property
    def state_dict(self) -> Mapping[str, torch.Tensor]:
        return self.payload["state_dict"]


def find_state_dict(obj: object) -> dict[str, torch.Tensor] | None:
    """The tensor mapping in a loaded file: the file itself or its ``model`` / ``state_dict`` entry, with a
    DataParallel ``module.`` prefix removed; None if there is none."""
    if isinstance(obj, Mapping):
        inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), Mapping)), None)
        obj = inner if inner is not None else obj
    if not isinstance(obj, Mapping) or not obj:
        return None
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        return None
    return {k.removeprefix("module."): v for k, v in obj.items()}


def key_mismatch(
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


HEAD_SUFFIX = ".classifier.weight"  # the identity classifiers: one row per training identity


def with_run_heads(
    own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], source: str
) -> dict[str, torch.Tensor]:
    """``state`` with the run's own identity classifiers (from ``own``) where the checkpoint's classify
    another number of identities: fine-tuning trains heads for the run's identities (e.g. from a checkpoint
    of all 171 RGBNT201 identities, in a run that holds 17 out for validation). Said in one warning line."""
    replaced = [k for k in own if k.endswith(HEAD_SUFFIX) and k in state and state[k].shape != own[k].shape]
    if not replaced:
        return dict(state)
    log.warning(
        "init_from %s: its identity classifiers have %d identities, this run trains %d: they start anew; "
        "the rest of the network is the checkpoint's",
        source,
        state[replaced[0]].shape[0],
        own[replaced[0]].shape[0],
    )
    return {**state, **{k: own[k] for k in replaced}}


def is_mdreid_checkpoint(payload: object) -> bool:
    """An mdreid Lightning checkpoint: a ``state_dict`` whose keys are the module's (``net.``...)."""
    state = payload.get("state_dict") if isinstance(payload, Mapping) else None
    return isinstance(state, Mapping) and any(str(k).startswith("net.") for k in state)


def is_pretraining_checkpoint(payload: object) -> bool:
    """mdreid.pretrain's Lightning checkpoint: a ``state_dict`` of the visual tower alone (``visual.``...)."""
    state = payload.get("state_dict") if isinstance(payload, Mapping) else None
    return isinstance(state, Mapping) and bool(state) and all(str(k).startswith("visual.") for k in state)


def _tower_file(path: Path) -> str:
    """The tower file the pretraining run that wrote checkpoint ``path`` left in its run folder."""
    run_dir = path.absolute().parent.parent  # <run dir>/checkpoints/last.ckpt
    towers = sorted(run_dir.glob("*.safetensors"))
    return (
        str(towers[0])
        if towers
        else f"the .safetensors that run wrote (out=, by default {run_dir}/proxy_foundation.safetensors)"
    )


def _other_kind(payload: object, path: Path, key: str, pretraining: bool) -> str | None:
    """Why a checkpoint of the other kind (pretraining vs re-identification) cannot serve here and what to
    pass instead; None when it is of the kind asked for."""
    if not pretraining and is_pretraining_checkpoint(payload):
        tower = _tower_file(path)
        return (
            f"{key}={str(path)!r} is a pretraining checkpoint (mdreid.pretrain's resume point): a visual tower, "
            f"not a re-identification model; fine-tune from its tower with mdreid.train "
            f"model.backbone.weights={tower} (or score the tower with mdreid.pretraining.zero_shot out=FILE)"
        )
    if pretraining and not is_pretraining_checkpoint(payload):
        kind = (
            "a fine-tuning checkpoint (mdreid.train)"
            if is_mdreid_checkpoint(payload)
            else "not a pretraining checkpoint"
        )
        return (
            f"{key}={str(path)!r} is {kind}; pretrain resumes only its own <run dir>/checkpoints/last.ckpt, and "
            "a later stage starts from an earlier stage's tower with init_weights=FILE.safetensors"
        )
    return None


def _load(path: Path, key: str, trust: bool, hint: str) -> object:
    try:
        return load_torch_file(path, key, trust, hint)
    except MDReIDError:
        raise
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
        reason = str(err).splitlines()[0] if str(err) else ""
        raise MDReIDError(
            f"{key}={str(path)!r} is not a readable checkpoint ({type(err).__name__}: {reason}); "
            "the file may be truncated (a copy or a save that did not finish)"
        ) from err


def _epochs_done(payload: Mapping[str, Any]) -> int | None:
    """Epochs whose training finished: the fit loop's count, else Lightning's 0-based epoch index + 1."""
    try:
        return int(payload["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
    except (KeyError, TypeError):
        epoch = payload.get("epoch")
        return int(epoch) + 1 if isinstance(epoch, int) else None


def _check_finite(state: Mapping[str, torch.Tensor], key: str, path: Path) -> None:
    bad = sorted(
        k
        for k, v in state.items()
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(v.isfinite().all())
    )
    if bad:
        more = f" (+{len(bad) - _LISTED} more)" if len(bad) > _LISTED else ""
        raise MDReIDError(
            f"{key}={str(path)!r} holds non-finite weights (NaN or Inf) in {', '.join(bad[:_LISTED])}{more}; "
            "use an earlier checkpoint of the run"
        )


def resolve_checkpoint(
    path: str | Path | None,
    key: str = "ckpt_path",
    trust: bool = False,
    hint: str = TRUST_HINT,
    pretraining: bool = False,
) -> Checkpoint:
    """Open the checkpoint ``key`` points at, or fail in one line that says what is wrong and what to do.

    The file is read without running code from it (``mdreid.files.safe_load``) unless ``trust`` is set;
    ``hint``: how the user of this command vouches for a file that asks to run code. ``pretraining``: the
    file must be mdreid.pretrain's checkpoint, else it must not be one.
    """
    if path is None or not str(path).strip():
        raise MDReIDError(
            f"{key} is not set; point it at a .ckpt written by mdreid.train or an official MDReID .pth"
        )
    path = Path(str(path)).expanduser()
    if path.is_dir():
        found = sorted(path.rglob("last.ckpt"))
        hint = f", e.g. {found[0]}" if found else ""
        raise MDReIDError(f"{key}={str(path)!r} is a folder; point it at a checkpoint file{hint}")
    if not path.is_file():
        raise MDReIDError(
            f"{key}={str(path)!r} does not exist; point it at a .ckpt written by mdreid.train "
            "or an official MDReID .pth"
        )
    payload = _load(path, key, trust, hint)
    other = _other_kind(payload, path, key, pretraining)
    if other:
        raise MDReIDError(other)
    if is_mdreid_checkpoint(payload) or pretraining:
        _check_finite(payload["state_dict"], key, path)
        step = payload.get("global_step")
        return Checkpoint(
            path, payload, False, _epochs_done(payload), step if isinstance(step, int) else None
        )
    state = find_state_dict(payload)
    if state is None:
        raise MDReIDError(
            f"{key}={str(path)!r} holds no model weights; use a .ckpt written by mdreid.train "
            "or an official MDReID .pth"
        )
    _check_finite(state, key, path)
    return Checkpoint(path, payload, True, None, None)
