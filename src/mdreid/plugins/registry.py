"""The one way to plug code into mdreid: a ``Registry`` per kind of plug-in (dataset readers, loss terms,
towers, and kinds to come). Infrastructure: it imports nothing of the application.

A plug-in is a function or class registered under a name by the registry's decorator; a config value names
it. The command line finds plug-ins of an installed package through its entry points: each entry point of
the kind's group (``mdreid.readers``, ...) names a module, which is imported so that its decorators run.
The entry point's own name (left of ``=``) is a label only, quoted in errors; the registered name is the
decorator's. Entry points are imported the first time a name is not found among those already registered,
so a built-in name never imports a plug-in, and a plug-in imported by hand (a notebook, a test) needs none.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any, TypeVar

from mdreid.process.errors import MDReIDError

T = TypeVar("T", bound=Callable[..., Any])
NAME = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class Plugin:
    """One registered plug-in: its name, the registered function or class, and what its kind records with
    it (a reader's junk rule)."""

    name: str
    target: Callable[..., Any]
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> str:
        """``module.qualname`` of the registered object, for messages."""
        return (
            f"{getattr(self.target, '__module__', '?')}.{getattr(self.target, '__qualname__', self.target)}"
        )


class Registry:
    """Plug-ins of one kind by name.

    Args:
        kind: what a plug-in is, in messages ("dataset reader").
        group: the entry-point group that makes installed packages' plug-ins known ("mdreid.readers").
        key: the config key whose value names a plug-in ("data.dataset").
        decorator: the public name of :meth:`register` for this kind ("register_reader").
        builtin: mdreid's own modules that register plug-ins of this kind, imported with the entry points.
        reserved: names taken by built-ins served outside the registry.
    """

    def __init__(
        self,
        kind: str,
        group: str,
        key: str,
        decorator: str,
        builtin: Sequence[str] = (),
        reserved: Sequence[str] = (),
    ) -> None:
        self.kind, self.group, self.key, self.decorator = kind, group, key, decorator
        self._builtin = tuple(builtin)
        self._reserved = tuple(reserved)
        self._plugins: dict[str, Plugin] = {}
        self._loaded: set[str] = set()

    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        """Decorator: the decorated function or class becomes the plug-in ``name`` (lower-case letters,
        digits and ``_``); ``meta`` is what the kind records with it."""
        if not NAME.fullmatch(name):
            raise ValueError(f"{self.kind} name {name!r}: use lower-case letters, digits and _")
        if name in self._reserved:
            raise ValueError(f"{self.kind} name {name!r} is taken by a built-in one")

        def register(target: T) -> T:
            plugin = Plugin(name, target, dict(meta))
            known = self._plugins.get(name)
            if known is not None and known.path != plugin.path:
                raise ValueError(f"{self.kind} name {name!r} is taken by {known.path}")
            self._plugins[name] = plugin
            return target

        return register

    def _import_new(self) -> None:
        """Import mdreid's own modules of this kind and every entry point of the group not imported yet."""
        for module in self._builtin:
            importlib.import_module(module)
        for point in entry_points(group=self.group):
            if point.value not in self._loaded:
                self._load(point)
                self._loaded.add(point.value)

    def _load(self, point: EntryPoint) -> None:
        try:
            point.load()
        except Exception as err:  # whatever the package's import raises: one line naming it
            package = point.dist.name if point.dist is not None else "an installed package"
            raise MDReIDError(
                f"the {self.group} entry point {point.name} = {point.value} of {package} cannot be imported "
                f"({type(err).__name__}: {err}); fix that module, or reinstall its package (pip install -e "
                "<its folder>)"
            ) from err

    def names(self) -> tuple[str, ...]:
        """Every registered name, installed packages' included, sorted."""
        self._import_new()
        return tuple(sorted(self._plugins))

    def __contains__(self, name: str) -> bool:
        if name not in self._plugins:
            self._import_new()
        return name in self._plugins

    def get(self, name: str, builtin_names: Sequence[str] = (), key: str | None = None) -> Plugin:
        """The plug-in ``name``; an unknown one is one line naming ``key`` (by default the registry's),
        listing the known names (``builtin_names`` first) and saying how to make a plug-in known."""
        if name in self:
            return self._plugins[name]
        known = ", ".join((*builtin_names, *sorted(self._plugins))) or "none"
        raise MDReIDError(
            f"{key or self.key}={name!r}: no {self.kind} has that name (known: {known}); a {self.kind} of your own is "
            f"registered with @{self.decorator}({name!r}) in a module that an installed package names under "
            f'[project.entry-points."{self.group}"]: install your package (pip install -e <its folder>), '
            "see docs/extending.md"
        )

    def check_call(
        self,
        plugin: Plugin,
        where: str,
        positional: Sequence[str] = (),
        keywords: Mapping[str, Any] | None = None,
    ) -> None:
        """Refuse, in one line naming ``where``, a call the plug-in's signature does not take: mdreid passes
        ``positional`` (their names) and ``keywords`` (the config's keys, and mdreid's own)."""
        keywords = dict(keywords or {})
        try:
            signature = inspect.signature(plugin.target)
        except (TypeError, ValueError):  # no signature to check (a builtin): the call itself will tell
            return
        try:
            signature.bind(*positional, **keywords)
        except TypeError as err:
            names = [p.name for p in signature.parameters.values() if p.name not in ("self", "cls")]
            near = [
                f"{close[0]} for {k}"
                for k in keywords
                if k not in names and (close := difflib.get_close_matches(k, names, n=1, cutoff=0.6))
            ]
            raise MDReIDError(
                f"{where}: the {self.kind} {plugin.name!r} ({plugin.path}) cannot be called with "
                f"{', '.join([*positional, *keywords]) or 'nothing'} ({err}"
                + (f"; did you mean {', '.join(near)}?" if near else "")
                + f"); it takes {', '.join(names)}: match the config's keys to them"
            ) from err
