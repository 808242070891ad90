"""A checkpoint's tensors against a model: where the state dict sits in a file, which keys do not fit, and the
run's own identity classifiers in place of a checkpoint's trained on other identities."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import torch

log = logging.getLogger(__name__)

# keys named per kind of mismatch in the error of a checkpoint that does not fit
_LISTED_KEYS = 5
# entries of a dict that may hold the state dict of another code base (official MDReID files use both)
_WRAPPERS = ("model", "state_dict")


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
