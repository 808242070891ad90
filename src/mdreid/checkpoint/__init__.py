"""Checkpoint files: opened once (``file.resolve_checkpoint``, read as data, never as code) into a typed
``Checkpoint`` that says what network it holds (``architecture``), with which hyper-parameters, image rule and
cameras, and whether mdreid or the official MDReID code wrote it; ``state`` fits its tensors to a model."""

from mdreid.checkpoint.checkpoint import Checkpoint
from mdreid.checkpoint.file import resolve_checkpoint

__all__ = ["Checkpoint", "resolve_checkpoint"]
