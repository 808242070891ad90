"""Reading a feature file (safetensors, or npz without pickles) and checking all of it before any scoring.

Every problem is one ``MDReIDError`` naming the file and the key: a missing or unknown key, a wrong shape or
dtype, a non-finite feature, a presence row with no modality, a row that is neither query nor gallery, a
junk rule that contradicts the named benchmark.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

from mdreid.data.readers import DATASETS, junk_rule
from mdreid.feature_file.schema import (
    FORMAT,
    OPTIONAL_META,
    OPTIONAL_TENSORS,
    REQUIRED_META,
    REQUIRED_TENSORS,
    SUFFIXES,
    FeatureSet,
)
from mdreid.metrics.any_to_any import JUNK_RULES
from mdreid.modalities import NUM_MODALITIES
from mdreid.process.errors import MDReIDError

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_INTS = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


class _Check:
    """Raises errors that name the file and the key."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str | None, problem: str) -> MDReIDError:
        where = f"{self.path}: key '{key}'" if key else str(self.path)
        return MDReIDError(f"{where}: {problem} (format: docs/feature_files.md)")


_SIGNATURES = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x93NUMPY", "a single .npy array, not an npz archive of named arrays"),
    (b"\x80", "a Python pickle"),
    (b"PK\x03\x04", "a zip archive"),
)


def _head(path: Path) -> bytes:
    with path.open("rb") as fh:
        return fh.read(512)


def _content(head: bytes) -> str:
    """What a file holds, judged from its first bytes, for an error about a file of the wrong kind."""
    if not head:
        return "an empty file"
    for magic, kind in _SIGNATURES:
        if head.startswith(magic):
            return kind
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "unknown binary data"
    return "text"


def _load_safetensors(path: Path, check: _Check) -> tuple[dict[str, Tensor], dict[str, str]]:
    head = _head(path)
    if head[8:9] != b"{":  # an 8-byte header length, then the JSON header
        raise check.fail(None, f"is not a safetensors file: it holds {_content(head)}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = dict(fh.metadata() or {})
            return {k: fh.get_tensor(k) for k in fh.keys()}, meta
    except (SafetensorError, OSError, ValueError, TypeError) as err:
        raise check.fail(None, f"not a readable safetensors file ({err})") from err


def _load_npz(path: Path, check: _Check) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Arrays become tensors; 0-d string arrays (``np.savez(..., junk="camera")``) are the metadata."""
    tensors, meta = {}, {}
    head = _head(path)
    if not head.startswith(b"PK\x03\x04"):  # an npz is a zip archive; np.load would try to unpickle others
        raise check.fail(
            None, f"is not an npz file (a zip archive of arrays, numpy.savez): it holds {_content(head)}"
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            for key in data.files:
                try:
                    array = data[key]
                except ValueError as err:  # an object array needs pickle, which is refused
                    raise check.fail(key, "holds Python objects, refused (allow_pickle=False)") from err
                if array.dtype.kind == "U":
                    if array.ndim != 0:
                        raise check.fail(
                            key, f"a text value must be a single string, got shape {array.shape}"
                        )
                    meta[key] = str(array)
                elif array.dtype.kind in "biuf":
                    tensors[key] = torch.from_numpy(np.ascontiguousarray(array))
                else:
                    raise check.fail(key, f"unsupported dtype {array.dtype}; store numbers, bools or strings")
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise check.fail(None, f"not a readable npz file ({err})") from err
    return tensors, meta


def _keys(
    check: _Check, found: set[str], required: tuple[str, ...], optional: tuple[str, ...], kind: str
) -> None:
    missing = [k for k in required if k not in found]
    if missing:
        raise check.fail(missing[0], f"missing {kind}; required: {', '.join(required)}")
    unknown = sorted(found - set(required) - set(optional))
    if unknown:
        allowed = ", ".join((*required, *optional))
        raise check.fail(unknown[0], f"unknown {kind}; allowed: {allowed}")


def _features(check: _Check, key: str, x: Tensor, n: int | None) -> Tensor:
    if x.dtype not in _FLOATS:
        raise check.fail(key, f"must be floating point (float16/bfloat16/float32/float64), got {x.dtype}")
    if x.ndim != 3 or x.shape[1] != NUM_MODALITIES or x.shape[0] == 0 or x.shape[2] == 0:
        raise check.fail(key, f"must have shape [N, {NUM_MODALITIES}, D] with N, D >= 1, got {list(x.shape)}")
    if n is not None and x.shape[0] != n:
        raise check.fail(key, f"has {x.shape[0]} rows, 'features' has {n}")
    bad = ~torch.isfinite(x.float()).all(dim=2)
    if bool(bad.any()):
        row, modality = (int(i) for i in torch.nonzero(bad)[0])
        raise check.fail(
            key,
            f"{int(bad.sum())} non-finite feature(s) (NaN/inf), first at row {row}, modality {modality}; "
            "store zeros for absent modalities",
        )
    return x


def _flags(check: _Check, key: str, x: Tensor, shape: tuple[int, ...]) -> Tensor:
    """A bool tensor, or an integer one holding only 0 and 1."""
    if tuple(x.shape) != shape:
        raise check.fail(key, f"must have shape {list(shape)}, got {list(x.shape)}")
    if x.dtype != torch.bool:
        if x.dtype not in _INTS or bool(((x != 0) & (x != 1)).any()):
            raise check.fail(key, f"must be bool (or integers 0/1), got {x.dtype}")
        x = x.bool()
    return x


def _ids(check: _Check, key: str, x: Tensor, n: int) -> Tensor:
    if x.dtype not in _INTS:
        raise check.fail(key, f"must be an integer id per row, got {x.dtype}")
    if tuple(x.shape) != (n,):
        raise check.fail(key, f"must have shape [{n}], got {list(x.shape)}")
    return x.long()


def _metadata(check: _Check, meta: dict[str, str]) -> dict[str, Any]:
    if meta["format"] != FORMAT:
        raise check.fail("format", f"is {meta['format']!r}; this version of mdreid reads {FORMAT!r}")
    junk, dataset = meta["junk"], meta.get("dataset")
    if junk not in JUNK_RULES:
        raise check.fail("junk", f"is {junk!r}; use one of {', '.join(JUNK_RULES)}")
    if dataset is not None and dataset.lower() in DATASETS and junk_rule(dataset) != junk:
        raise check.fail("junk", f"is {junk!r} but {dataset} uses the {junk_rule(dataset)!r} rule")
    provenance = None
    if "provenance" in meta:
        try:
            provenance = json.loads(meta["provenance"])
        except json.JSONDecodeError as err:
            raise check.fail("provenance", f"is not JSON ({err})") from err
        if not isinstance(provenance, dict):
            raise check.fail("provenance", "must be a JSON object")
    return {"junk": junk, "dataset": dataset, "method": meta.get("method"), "provenance": provenance}


def _names(check: _Check, meta: dict[str, str], n: int) -> list[str] | None:
    if "names" not in meta:
        return None
    try:
        names = json.loads(meta["names"])
    except json.JSONDecodeError as err:
        raise check.fail("names", f"is not JSON ({err})") from err
    if not isinstance(names, list) or len(names) != n or not all(isinstance(x, str) for x in names):
        raise check.fail("names", f"must be a JSON list of {n} strings, one per row")
    return names


def _boxes(check: _Check, x: Tensor | None, n: int) -> Tensor | None:
    if x is None:
        return None
    if x.dtype not in _FLOATS or tuple(x.shape) != (n, 4):
        raise check.fail(
            "box",
            f"must be float [{n}, 4] (bb_left, bb_top, bb_width, bb_height), got {x.dtype} {list(x.shape)}",
        )
    if not bool(torch.isfinite(x.float()).all()):
        raise check.fail("box", "holds a non-finite value")
    return x.float()


def read_feature_file(path: str | Path) -> FeatureSet:
    """The validated content of a ``.safetensors`` or ``.npz`` feature file (docs/feature_files.md)."""
    path = Path(path).expanduser()
    check = _Check(path)
    if not path.is_file():
        raise check.fail(None, "no such file" if not path.exists() else "not a file")
    if path.suffix not in SUFFIXES:
        raise check.fail(None, f"unknown file type {path.suffix!r}; use {' or '.join(SUFFIXES)}")
    loader = _load_safetensors if path.suffix == ".safetensors" else _load_npz
    tensors, meta = loader(path, check)
    _keys(check, set(meta), REQUIRED_META, OPTIONAL_META, "text value")
    description = _metadata(check, meta)
    required = REQUIRED_TENSORS + (("sceneid",) if description["junk"] == "scene" else ())
    _keys(check, set(tensors), required, OPTIONAL_TENSORS, "tensor")
    features = _features(check, "features", tensors["features"], None)
    n = features.shape[0]
    shared = tensors.get("shared")
    present = _flags(check, "present", tensors["present"], (n, NUM_MODALITIES))
    empty = ~present.any(dim=1)
    if bool(empty.any()):
        raise check.fail("present", f"row {int(torch.nonzero(empty)[0])} has no modality; drop such rows")
    is_query = _flags(check, "is_query", tensors["is_query"], (n,))
    is_gallery = _flags(check, "is_gallery", tensors["is_gallery"], (n,))
    neither = ~(is_query | is_gallery)
    if bool(neither.any()):
        raise check.fail("is_query", f"row {int(torch.nonzero(neither)[0])} is neither query nor gallery")
    for key, flags in (("is_query", is_query), ("is_gallery", is_gallery)):
        if not bool(flags.any()):
            raise check.fail(key, "no row has it set; a scoring needs queries and a gallery")
    sceneid, frame, track = (tensors.get(k) for k in ("sceneid", "frame", "track"))
    return FeatureSet(
        features=features,
        shared=None if shared is None else _features(check, "shared", shared, n),
        present=present,
        pid=_ids(check, "pid", tensors["pid"], n),
        camid=_ids(check, "camid", tensors["camid"], n),
        sceneid=None if sceneid is None else _ids(check, "sceneid", sceneid, n),
        is_query=is_query,
        is_gallery=is_gallery,
        frame=None if frame is None else _ids(check, "frame", frame, n),
        track=None if track is None else _ids(check, "track", track, n),
        box=_boxes(check, tensors.get("box"), n),
        names=_names(check, meta, n),
        **description,
    )
