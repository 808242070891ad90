"""Config sections read as typed dataclasses, so a misspelt key or a value of the wrong kind stops the run at
start-up with one line naming it, instead of being ignored or failing deep inside training."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar, get_type_hints

from omegaconf import OmegaConf

from mdreid.runtime.errors import MDReIDError

T = TypeVar("T")

# scalar field type -> the Python types its config value may have (bool is no number here), and how to say so
_SCALARS: dict[Any, tuple[tuple[type, ...], str]] = {
    bool: ((bool,), "true or false"),
    int: ((int,), "an integer"),
    float: ((int, float), "a number"),
}


def plain(value: Any) -> Any:
    """A config value as plain Python (dicts, lists, scalars): what hyper-parameters and checkpoints store, so
    that a checkpoint holds no OmegaConf objects and loads as data."""
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def reject_unknown_keys(values: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    """An error naming every key of ``values`` outside ``allowed`` (config section ``where``) and the allowed ones."""
    allowed = list(allowed)
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise MDReIDError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")


def _fits(value: Any, kinds: tuple[type, ...]) -> bool:
    return isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool))


def typed_section(cls: type[T], values: Mapping[str, Any] | None, where: str) -> T:
    """``cls(**values)`` for the dataclass ``cls`` of config section ``where`` (e.g. ``model.loss``).

    Unknown keys and scalar values of the wrong kind (a string for a weight, a number for a switch) are
    ``MDReIDError``s; a missing key takes the field's default, and ``cls`` checks allowed values itself.
    """
    values = dict(values or {})
    reject_unknown_keys(values, (f.name for f in dataclasses.fields(cls)), where)
    hints = get_type_hints(cls)
    for name, value in values.items():
        scalar = _SCALARS.get(hints[name])
        if scalar is not None and not _fits(value, scalar[0]):
            raise MDReIDError(f"{where}.{name}={value!r}: expected {scalar[1]}")
    return cls(**values)
