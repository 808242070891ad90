"""Paths written into files that are committed or shared (a weight file's provenance, a study's report):
relative to a folder the reader knows, so they carry none of the writing machine's folders."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


def portable(path: str | Path, base: str | Path) -> str:
    """``path`` relative to ``base`` (both made absolute first), with ``/`` separators."""
    rel = os.path.relpath(Path(path).expanduser().absolute(), Path(base).expanduser().absolute())
    return Path(rel).as_posix()


def portable_overrides(overrides: Sequence[str], base: str | Path) -> list[str]:
    """Command-line ``key=value`` overrides with every absolute path value made relative to ``base``."""
    out = []
    for item in overrides:
        key, sep, value = item.partition("=")
        out.append(f"{key}={portable(value, base)}" if sep and os.path.isabs(value) else item)
    return out
