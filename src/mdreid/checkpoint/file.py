"""Opening a checkpoint file: ``resolve_checkpoint`` is the one door train, eval and export go through.

The file is read as data, never as code (``mdreid.files.safe_load``). It tells an mdreid Lightning
checkpoint from an official MDReID ``.pth`` (docs/official_checkpoints.md), and turns every ordinary mistake
into one line naming the key and the file: a missing path, a folder, a truncated or foreign file, NaN
weights. Whether the weights fit a model is checked where the model is known (``mdreid.checkpoint.state``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from mdreid.checkpoint.checkpoint import Checkpoint
from mdreid.checkpoint.state import find_state_dict
from mdreid.files.safe_load import TRUST_HINT, load_torch_file
from mdreid.process.errors import MDReIDError

_LISTED = 4


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
            f"model.backbone.weights={tower} (or score the tower with mdreid.pretrain.zero_shot out=FILE)"
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
