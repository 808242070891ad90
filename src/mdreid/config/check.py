"""Compose an entry point's config the way its command line will, with Hydra's config errors as one line.

``check_command_line`` is what ``cli_overrides.checked_overrides`` runs before ``hydra.main``: each
configuration the command would run (each sweep value once) is composed, every ``+key`` checked
(``mdreid.config.keys``), every mandatory value required, and a failure is one ``MDReIDError`` line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf

from mdreid.config.keys import (
    RENAMED,
    check_added_key,
    check_mandatory,
    closest,
    options_with_key,
    override_key,
    sweep_variants,
    unknown_key_hint,
)
from mdreid.config.location import config_dir
from mdreid.process.errors import MDReIDError


def _compose(config_name: str, overrides: Sequence[str], return_hydra_config: bool = True) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name, overrides=list(overrides), return_hydra_config=return_hydra_config)


def _siblings(config_name: str, overrides: Sequence[str], key: str) -> list[str]:
    """The full keys beside ``key`` in the config composed without the override that names it."""
    rest = [o for o in overrides if override_key(o) != key]
    try:
        cfg = _compose(config_name, rest)
    except HydraException:
        return []
    parent, _, _ = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    if not isinstance(node, DictConfig):
        return []
    return [f"{parent}.{k}" if parent else str(k) for k in node if k != "hydra"]


def _not_in_config(config_name: str, overrides: Sequence[str], key: str) -> MDReIDError:
    value = next((o.split("=", 1)[1] for o in overrides if override_key(o) == key and "=" in o), "")
    line = f"{key}={value}: no such key in this config"
    options = options_with_key(config_dir(), key)
    if options and key not in RENAMED:
        return MDReIDError(f"{line}; {' or '.join(options)} has it (choose that option first)")
    return MDReIDError(line + unknown_key_hint(key, _siblings(config_name, overrides, key)))


def explain(err: HydraException, config_name: str, overrides: Sequence[str]) -> MDReIDError:
    """One line for a Hydra composition error: the key or option it names and the fix."""
    text = str(err).strip()
    first = text.splitlines()[0] if text else type(err).__name__
    if isinstance(err, MissingConfigException) and getattr(err, "options", None) is not None:
        missing = re.search(r"Could not find '([^']+)'", text)
        group, _, name = (missing.group(1) if missing else first).rpartition("/")
        near = closest(name, err.options)
        hint = f"did you mean {group}={near}? " if near else ""
        return MDReIDError(f"{group}={name}: no such option; {hint}options: {', '.join(err.options)}")
    found = re.match(r"Could not override '([^']+)'", first)
    if found:
        return _not_in_config(config_name, overrides, found.group(1))
    found = re.search(r"An item is already at '([^']+)'", text)
    if found:
        key = found.group(1)
        return MDReIDError(f"+{key}: {key} is already in the config; set it without the +: {key}=...")
    found = re.match(r"Ambiguous value for argument '([^']+)'", first)
    if found:
        return MDReIDError(
            f"{found.group(1)}: a comma makes a sweep; add -m to sweep, write [a,b] for a list, or quote "
            "the value for a string"
        )
    return MDReIDError(f"{first} (Hydra)")


def compose_checked(
    config_name: str, overrides: Sequence[str] = (), return_hydra_config: bool = True
) -> DictConfig:
    """The composed config, or one ``MDReIDError`` line for Hydra's error."""
    try:
        return _compose(config_name, overrides, return_hydra_config)
    except HydraException as err:
        raise explain(err, config_name, overrides) from err


def check_command_line(config_name: str, overrides: Sequence[str], multirun: bool, entry: str) -> None:
    """Compose every configuration the command runs and check it (see the module docstring)."""
    variants = sweep_variants(overrides) if multirun else [list(overrides)]
    for variant in variants:
        full = compose_checked(config_name, variant)
        check_mandatory(full, entry)
        added = [override_key(o) for o in variant if o.startswith("+")]
        if added:
            base = compose_checked(config_name, [o for o in variant if not o.startswith(("+", "~"))])
            for key in added:
                check_added_key(base, full, key)
    GlobalHydra.instance().clear()
