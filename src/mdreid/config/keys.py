"""Every command-line key checked against the config before anything runs, so a typo is one ``error:`` line
naming the closest known key, never a run that quietly ignores it.

Hydra itself refuses ``init_form=x`` (not in the config) with a hint to write ``+init_form=x``, which it then
accepts: the key lands in the config and nothing reads it. Here a ``+key`` must name a key the config has
(a section removed with ``~`` and given again), an argument of the class a ``_target_`` node builds
(``trainer``, ``callbacks``, ``logger``: the library's own signature), an argument of a registered tower
(checked at start-up), a field of a structured ``hydra`` node, an entry of a section of user-named entries
(``model.loss.extra_terms``), or a key of an optional section the config leaves null (its typed reader checks
it). Hydra's own config errors
(not in struct, an unknown group option, a mandatory value not given) become the same single line.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mdreid.process.errors import MDReIDError

# keys that moved: old full key -> new full key
RENAMED = {"plots": "eval.plots", "model.mdl.enabled": "model.mdl.decoupled"}
# sections whose entries the user names (checked by their own reader, ``_target_`` included)
USER_ENTRIES = ("model.loss.extra_terms",)
# sections that name a registered plug-in -> the key that names it
PLUGIN_SECTIONS = {"model.backbone": "tower"}
# ``_target_`` sections that a typed reader parses whole: the config lists every key, so a new one is a typo
TYPED_SECTIONS = ("data",)
# sections of named ``_target_`` entries that a user may add to (each checked against its class)
OWNED_ENTRIES = ("callbacks", "logger")
# what each mandatory top-level value means, for the line that asks for it
MANDATORY_HINTS = {
    "ckpt_path": "give the checkpoint: ckpt_path=PATH (a .ckpt of mdreid.train or an official .pth)",
    "file": "give the feature file: python -m mdreid.score FILE",
}
_HYDRA_KEYS = ("_target_", "_partial_", "_args_", "_recursive_", "_convert_")


def closest(name: str, known: Iterable[str]) -> str | None:
    """The known name nearest to ``name`` by spelling, if any is near."""
    found = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return found[0] if found else None


def unknown_key_hint(name: str, known: Iterable[str], full_key: str | None = None) -> str:
    """``; it is now X`` for a renamed key, else ``; did you mean X?`` when one is near ``name``, else the
    known keys (``known``: the full keys beside ``name``; ``full_key``: the whole key given, if longer)."""
    for key in (full_key, name):
        if key in RENAMED:
            return f"; it is now {RENAMED[key]}"
    known = list(known)
    near = closest(name, known)
    if near is not None:
        return f"; did you mean {near}?"
    return f"; known here: {', '.join(known)}" if known else ""


def override_key(override: str) -> str:
    """``++model.x=1`` -> ``model.x``; ``model/backbone=tiny`` -> ``model/backbone``."""
    return override.split("=", 1)[0].lstrip("~+").split("@", 1)[0]


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def locate_target(target: Any, where: str) -> Any:
    """The class or function a ``_target_`` names, or one line naming ``where`` and why it cannot be imported."""
    from hydra.utils import get_object

    try:
        return get_object(str(target))
    except Exception as err:
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise MDReIDError(
            f"{where}._target_={target}: cannot be imported ({reason}); check the dotted path and that its "
            "package is installed"
        ) from err


def _arguments(target: Any) -> list[str] | None:
    """The keyword arguments ``target`` takes (a class: its ``__init__``'s); None if it takes any."""
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind is not inspect.Parameter.VAR_POSITIONAL]


def _node(cfg: Any, key: str) -> tuple[bool, Any]:
    """``(found, value)`` of the dotted ``key`` in ``cfg``, unresolved."""
    node = cfg
    for part in key.split("."):
        if not isinstance(node, DictConfig) or part not in node:
            return False, None
        node = node._get_node(part)
        node = node if isinstance(node, DictConfig) else node._value()
    return True, node


def _check_argument(target_path: str, target: Any, key: str, added: str) -> None:
    """``+added`` sets ``key`` of the node at ``target_path``: an argument of what its ``_target_`` builds."""
    built = locate_target(target, target_path)
    names = _arguments(built)
    if names is None or key in names or key in _HYDRA_KEYS:
        return
    raise MDReIDError(
        f"+{added}: {getattr(built, '__module__', '')}.{getattr(built, '__qualname__', built)} takes no "
        f"argument {key!r}"
        + unknown_key_hint(_join(target_path, key), (_join(target_path, n) for n in names if n != "self"))
    )


def _existing_ancestor(base: DictConfig, key: str) -> tuple[str, Any]:
    parts = key.split(".")
    for depth in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:depth])
        found, node = _node(base, prefix)
        if found:
            return prefix, node
    return "", base


def check_added_key(base: DictConfig, full: DictConfig, key: str) -> None:
    """Refuse ``+key`` (see the module docstring); ``base``: the config composed without any ``+`` or ``~``
    override, ``full``: with every override."""
    if _node(base, key)[0] or key.startswith(tuple(f"{u}." for u in USER_ENTRIES)):
        return
    parent, node = _existing_ancestor(base, key)
    parts = key[len(parent) + 1 :].split(".") if parent else key.split(".")
    new = _join(parent, parts[0])
    if key.split(".")[0] == "hydra":
        schema = OmegaConf.get_type(node) if isinstance(node, DictConfig) else None
        if schema is None or not dataclasses.is_dataclass(schema):
            return  # a free mapping of Hydra's (env_set, callbacks, sweeper params)
        raise MDReIDError(
            f"+{key}: Hydra's {parent} has no field {parts[0]!r}"
            + unknown_key_hint(new, (_join(parent, k) for k in node), key)
        )
    found, built = _node(full, parent)
    if found and isinstance(built, DictConfig) and PLUGIN_SECTIONS.get(parent) in built:
        return  # an argument of a registered plug-in: checked against its signature at start-up
    if found and isinstance(built, DictConfig) and "_target_" in built and parent not in TYPED_SECTIONS:
        # an argument of a class
        _check_argument(parent, built["_target_"], parts[0], key)
        return
    found, entry = _node(full, new)
    if parent in OWNED_ENTRIES and len(parts) > 1:  # a new callback or logger of the user's
        if not (found and isinstance(entry, DictConfig) and "_target_" in entry):
            raise MDReIDError(f"+{key}: a new {parent} entry needs its class: +{new}._target_=...")
        _check_argument(new, entry["_target_"], parts[1], key)
        return
    if node is None:  # an optional section the config leaves null: its reader checks the keys
        return
    siblings = (_join(parent, str(k)) for k in node if k != "hydra") if isinstance(node, DictConfig) else ()
    raise MDReIDError(f"+{key}: {new} is no key of this config" + unknown_key_hint(new, siblings, key))


def missing_values(cfg: DictConfig, prefix: str = "") -> list[str]:
    """Mandatory values (``???``) the config leaves unset, outside the ``hydra`` node; unresolved."""
    out = []
    for key in cfg:
        full = _join(prefix, str(key))
        if full == "hydra":
            continue
        if OmegaConf.is_missing(cfg, key):
            out.append(full)
            continue
        node = cfg._get_node(key)
        if isinstance(node, DictConfig) and not node._is_none() and not node._is_interpolation():
            out.extend(missing_values(node, full))
    return out


def check_mandatory(cfg: DictConfig, entry: str) -> None:
    missing = missing_values(cfg)
    if missing:
        key = missing[0]
        hint = MANDATORY_HINTS.get(key, f"set it: {key}=...")
        raise MDReIDError(f"{key} is not set ({entry}); {hint}")


def options_with_key(config_dir: str | Path, key: str) -> list[str]:
    """``group=option`` choices under ``config_dir`` whose file has ``key`` (the part below the group's
    path), e.g. ``model/backbone=tiny`` for ``model.backbone.vision.width``."""
    parts = key.split(".")
    found = []
    for depth in range(len(parts) - 1, 0, -1):
        group = Path(config_dir, *parts[:depth])
        if not group.is_dir():
            continue
        rest = ".".join(parts[depth:])
        for option in sorted(group.glob("*.yaml")):
            try:
                if OmegaConf.select(OmegaConf.load(option), rest, default=None) is not None:
                    found.append(f"{'/'.join(parts[:depth])}={option.stem}")
            except Exception:
                continue
    return found


def sweep_variants(overrides: Sequence[str]) -> list[list[str]]:
    """The override lists a sweep runs, enough to check each value once: every sweep at its first value, then
    each further value of each sweep with the others at their first. A sweep that cannot be listed (an
    interval of an optimiser) is left out; its key is still checked through the other overrides."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType

    prefix = {OverrideType.ADD: "+", OverrideType.FORCE_ADD: "++", OverrideType.DEL: "~"}
    fixed: list[str] = []
    sweeps: list[tuple[int, list[str]]] = []
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        if not override.is_sweep_override():
            fixed.append(override.input_line)
            continue
        try:
            values = list(override.sweep_string_iterator())
        except Exception:
            continue
        head = f"{prefix.get(override.type, '')}{override.get_key_element()}="
        sweeps.append((len(fixed), [head + v for v in values]))
        fixed.append(head + values[0] if values else "")
    variants = [[o for o in fixed if o]]
    for at, values in sweeps:
        for value in values[1:]:
            variant = list(fixed)
            variant[at] = value
            variants.append([o for o in variant if o])
    return variants
