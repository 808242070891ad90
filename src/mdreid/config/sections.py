"""Config sections read as typed dataclasses, so a misspelt key or a value of the wrong kind stops the run at
start-up with one line naming it, instead of being ignored or failing deep inside training."""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from omegaconf import OmegaConf

from mdreid.process.errors import MDReIDError

T = TypeVar("T")

# scalar field type -> the Python types its config value may have (bool is no number here), and how to say so
_SCALARS: dict[Any, tuple[tuple[type, ...], str]] = {
    bool: ((bool,), "true or false"),
    int: ((int,), "an integer"),
    float: ((int, float), "a number"),
    str: ((str,), "a string"),
}


def plain(value: Any) -> Any:
    """A config value as plain Python (dicts, lists, scalars): what hyper-parameters and checkpoints store, so
    that a checkpoint holds no OmegaConf objects and loads as data."""
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"backbone.vision.heads": 2, ...}`` of a nested mapping or config node, its values plain and a tuple
    a list (as configs write lists): the form in which a checkpoint's values meet a command line's."""
    node = plain(node)
    if not isinstance(node, Mapping):
        return {prefix: list(node) if isinstance(node, tuple) else node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        out.update(leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def reject_unknown_keys(values: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    """An error naming every key of ``values`` outside ``allowed`` (config section ``where``) and the allowed ones."""
    allowed = list(allowed)
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise MDReIDError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")


def _fits(value: Any, kinds: tuple[type, ...]) -> bool:
    return isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool))


def _key(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _optional(hint: Any) -> tuple[Any, bool]:
    """``(T, True)`` for ``T | None``, else ``(hint, False)``."""
    if get_origin(hint) in (Union, types.UnionType):
        rest = [a for a in get_args(hint) if a is not type(None)]
        if len(rest) == 1 and len(rest) < len(get_args(hint)):
            return rest[0], True
    return hint, False


def _typed_value(hint: Any, value: Any, key: str) -> Any:
    """``value`` of config key ``key`` checked against the field type ``hint``: a class with a ``parse``
    classmethod parses its plain value, a nested dataclass is parsed from its mapping, a list becomes a tuple;
    types this does not know (mappings, ``Any``) pass as they are."""
    hint, optional = _optional(hint)
    if value is None and optional:
        return None
    parse = getattr(hint, "parse", None) if isinstance(hint, type) else None
    if parse is not None:  # a class that reads its own plain form (e.g. PairSelection)
        return parse(value)
    if dataclasses.is_dataclass(hint):
        return typed_section(hint, value, key)
    scalar = _SCALARS.get(hint)
    if scalar is not None:
        if not _fits(value, scalar[0]):
            raise MDReIDError(f"{key}={value!r}: expected {scalar[1]}{' or null' if optional else ''}")
        return float(value) if hint is float else value
    if get_origin(hint) in (tuple, Sequence, list):
        args = [a for a in get_args(hint) if a is not Ellipsis]
        size = len(args) if get_origin(hint) is tuple and Ellipsis not in get_args(hint) else None
        if (
            isinstance(value, (str, bytes))
            or not isinstance(value, Sequence)
            or size not in (None, len(value))
        ):
            raise MDReIDError(f"{key}={value!r}: expected a list of {size or 'any number of'} value(s)")
        kinds = args[:1] * len(value) if size is None else args
        return tuple(
            _typed_value(k, v, f"{key}[{i}]") for i, (k, v) in enumerate(zip(kinds, value, strict=True))
        )
    return value


def _names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def typed_section(
    cls: type[T], values: Mapping[str, Any] | None, where: str, fixed: Mapping[str, Any] | None = None
) -> T:
    """``cls(**values, **fixed)`` for the dataclass ``cls`` of config section ``where`` (e.g. ``model.loss``).

    Unknown keys and values of the wrong kind (a string for a weight, a number for a switch, a word for a
    list) are ``MDReIDError``s naming the key; nested dataclass fields are parsed the same way, lists become
    tuples, a missing key takes the field's default, and ``cls`` checks allowed values itself. ``fixed``
    sets fields the code decides (e.g. a seed), which are no keys of the section.
    """
    if values is not None and not isinstance(values, Mapping):
        raise MDReIDError(f"{where}={values!r}: expected a mapping of {', '.join(_names(cls))}")
    values = dict(values or {})
    fixed = dict(fixed or {})
    reject_unknown_keys(values, (n for n in _names(cls) if n not in fixed), where)
    hints = get_type_hints(cls)
    parsed = {name: _typed_value(hints[name], value, _key(where, name)) for name, value in values.items()}
    return cls(**parsed, **fixed)


def typed_view(cls: type[T], section: Mapping[str, Any], where: str) -> T:
    """The fields of ``cls`` read from ``section``, whose other keys belong to someone else (the top level of
    an entry point's config, or ``trainer``, whose keys Lightning checks itself): checked as ``typed_section``
    does; a key the section lacks takes the field's default. Values are taken as they are (a sub-section
    stays a config node), so a field that needs plain data says so in its type."""
    names = [f.name for f in dataclasses.fields(cls) if f.name in section.keys()]
    return typed_section(cls, {name: section[name] for name in names}, where)
