"""Plug-ins: the registry every kind of plug-in (dataset readers, loss terms, towers) is registered in and
found through (docs/extending.md)."""

from mdreid.plugins.registry import Plugin, Registry

__all__ = ["Plugin", "Registry"]
