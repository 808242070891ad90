"""Opening a user's torch file without running code from it.

A pickle can name any Python callable and have it called while loading: a downloaded ``.pth`` whose pickle
calls ``os.system`` runs its command before any check of ours sees the weights. Every torch file a user hands
mdreid is therefore read with ``weights_only=True`` (tensors, containers and numbers only), widened by the
few types mdreid's own checkpoints contain: OmegaConf containers that older Lightning checkpoints carry in
their saved hyper-parameters. A file that needs anything else is refused with the type it asked for, unless
the user vouches for the file with ``trust_checkpoint=true``, which loads it as pickle does, code included.
"""

from __future__ import annotations

import collections
import contextlib
import pickle
import re
import typing
from collections.abc import Iterator
from pathlib import Path

import torch
from omegaconf import DictConfig, ListConfig, nodes
from omegaconf.base import ContainerMetadata, Metadata

from mdreid.process.errors import MDReIDError

# what a checkpoint written by mdreid (and Lightning) may hold beyond torch's own safe types
SAFE_GLOBALS: list[object] = [
    DictConfig,
    ListConfig,
    ContainerMetadata,
    Metadata,
    nodes.AnyNode,
    nodes.StringNode,
    nodes.IntegerNode,
    nodes.FloatNode,
    nodes.BooleanNode,
    nodes.BytesNode,
    nodes.PathNode,
    typing.Any,
    collections.defaultdict,
    # the element/key types OmegaConf records in its metadata (as values; rebuilding them calls nothing else)
    dict,
    list,
    tuple,
    int,
    float,
    bool,
    str,
    bytes,
]
TRUST_HINT = (
    "if you trust the file's source, set trust_checkpoint=true to load it anyway (that runs whatever code "
    "the file carries)"
)
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
# how torch.save's legacy (pre-zip) format begins: a pickled magic number (a 10-byte LONG1)
_LEGACY_MAGIC = b"\x8a\x0a" + torch.serialization.MAGIC_NUMBER.to_bytes(10, "little")


@contextlib.contextmanager
def checkpoint_globals() -> Iterator[None]:
    """Let ``torch.load(weights_only=True)`` (ours and Lightning's reload) accept mdreid's own checkpoints."""
    with torch.serialization.safe_globals(SAFE_GLOBALS):
        yield


def refused_type(err: BaseException) -> str | None:
    """The callable a refused pickle asked for (``posix.system``), from torch's weights-only error; None
    for any other failure (a file that is no pickle at all, a truncated one)."""
    found = _GLOBAL.search(str(err)) if isinstance(err, pickle.UnpicklingError) else None
    return found.group(1) if found else None


def is_plain_pickle(path: Path) -> bool:
    """A file ``pickle.dump`` wrote, not ``torch.save``: a pickle (protocol 2 or later) that neither is a zip
    archive nor starts with the legacy format's magic number. ``torch.load`` cannot read it in any mode; with
    ``weights_only=False`` it would first run whatever the pickle carries."""
    with path.open("rb") as fh:
        head = fh.read(32)
    return head.startswith(b"\x80") and _LEGACY_MAGIC not in head


def load_torch_file(path: Path, key: str, trust: bool = False, hint: str = TRUST_HINT) -> object:
    """``torch.load`` of a user's file on the CPU, memory-mapped where the format allows.

    Without ``trust`` only tensors, plain containers and :data:`SAFE_GLOBALS` are rebuilt; a file asking for
    more is one line naming ``key``, the file, the type it wanted and ``hint``. A plain pickle (not written by
    ``torch.save``) is refused in one line, trusted or not. Other read failures propagate.
    """
    if is_plain_pickle(path):
        raise MDReIDError(
            f"{key}={str(path)!r} is a plain Python pickle (pickle.dump), not a file torch.save wrote, so it was "
            "not loaded (unpickling it runs whatever code it carries); if you trust its source, load it "
            "yourself and save the tensors with torch.save(state_dict, FILE)"
        )

    def load(**kwargs: object) -> object:
        with checkpoint_globals():
            return torch.load(path, map_location="cpu", weights_only=not trust, **kwargs)

    try:
        try:
            return load(mmap=True)
        except RuntimeError as err:
            if "mmap" not in str(err):
                raise
            return load()  # legacy (pre-zip) .pth
    except pickle.UnpicklingError as err:
        wanted = refused_type(err)
        if wanted is None:
            raise
        raise MDReIDError(
            f"{key}={str(path)!r} asks to run {wanted} while loading, which no mdreid or MDReID checkpoint "
            f"needs, so it was not loaded; {hint}"
        ) from err
