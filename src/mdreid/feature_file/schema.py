"""What a feature file holds: per-image features of each modality, presence, ids and roles, plus a few strings.

``FeatureSet`` is the validated content; ``read`` and ``write`` move it to and from disk. The per-modality
``features`` play the role of the metric's specific features when ``shared`` features are given too (a
decoupled model such as MDReID), and of its only, shared-like features otherwise (one feature per modality,
compared as ``pair_similarity`` describes), the same mapping the LightningModule uses for the baseline.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mdreid.metrics.any_to_any import SAMPLE_KEYS
from mdreid.process.errors import MDReIDError

FORMAT = "mdreid-features/1"
DEFAULT_NAME = "features.safetensors"
SUFFIXES: tuple[str, ...] = (".safetensors", ".npz")
REQUIRED_TENSORS: tuple[str, ...] = ("features", "present", "pid", "camid", "is_query", "is_gallery")
OPTIONAL_TENSORS: tuple[str, ...] = ("shared", "sceneid", "frame", "track", "box")
REQUIRED_META: tuple[str, ...] = ("format", "junk")
OPTIONAL_META: tuple[str, ...] = ("dataset", "method", "provenance", "names")


@dataclass(frozen=True, kw_only=True)
class FeatureSet:
    """The rows of one evaluation, in file order: ``features`` / ``shared`` [N, 3, D] float (modalities R, N,
    T; rows of absent modalities are never compared), ``present`` [N, 3] bool, ``pid`` / ``camid`` /
    ``sceneid`` [N] int64, ``is_query`` / ``is_gallery`` [N] bool, and the junk rule and descriptions.
    Rows cut from videos keep where they came from: ``frame`` / ``track`` [N] int64 and ``box`` [N, 4]
    float32 (MOTChallenge ``bb_left, bb_top, bb_width, bb_height``); ``names`` is one string per row."""

    # the features
    features: Tensor
    shared: Tensor | None = None
    # each row's modalities, identity and view
    present: Tensor
    pid: Tensor
    camid: Tensor
    sceneid: Tensor | None = None
    # its roles
    is_query: Tensor
    is_gallery: Tensor
    # where a row cut from a video came from
    frame: Tensor | None = None
    track: Tensor | None = None
    box: Tensor | None = None
    # the set's rule and descriptions
    junk: str
    dataset: str | None = None
    method: str | None = None
    provenance: Mapping[str, Any] | None = None
    names: Sequence[str] | None = None

    @property
    def num_rows(self) -> int:
        return int(self.present.shape[0])

    def metric_inputs(self) -> dict[str, Tensor | None]:
        """``AnyToAnyReID.update`` arguments for all rows at once; ``index`` is the row number, so rows are
        scored as stored (no two rows merge) and in file order."""
        decoupled = self.shared is not None
        return {
            "sp": self.features if decoupled else None,
            "sh": self.shared if decoupled else self.features,
            "present": self.present,
            "pid": self.pid,
            "camid": self.camid,
            # unused under the camera rule, which compares cameras only
            "sceneid": self.sceneid if self.sceneid is not None else torch.zeros_like(self.pid),
            "index": torch.arange(self.num_rows),
            "is_query": self.is_query,
            "is_gallery": self.is_gallery,
        }

    @classmethod
    def from_samples(cls, samples: Mapping[str, Tensor | None], junk: str, **description: Any) -> FeatureSet:
        """The samples an ``AnyToAnyReID`` scored (``Evaluation.samples``), in their order: the inverse of
        ``metric_inputs``, so the file scores to the same numbers."""
        sp, sh = samples["sp"], samples["sh"]
        if sh is None:
            raise MDReIDError(
                "saving features: the metric holds specific features without shared ones, which a feature "
                "file cannot tell from one feature per modality"
            )
        return cls(
            features=sh if sp is None else sp,
            shared=None if sp is None else sh,
            junk=junk,
            **{key: samples[key] for key in SAMPLE_KEYS},
            **description,
        )

    def tensors(self) -> dict[str, Tensor]:
        """The stored tensors by key (contiguous, on the CPU)."""
        out = {
            "features": self.features,
            "shared": self.shared,
            "present": self.present.bool(),
            "pid": self.pid.long(),
            "camid": self.camid.long(),
            "sceneid": None if self.sceneid is None else self.sceneid.long(),
            "is_query": self.is_query.bool(),
            "is_gallery": self.is_gallery.bool(),
            "frame": None if self.frame is None else self.frame.long(),
            "track": None if self.track is None else self.track.long(),
            "box": None if self.box is None else self.box.float(),
        }
        stored, seen = {}, set()
        for key, value in out.items():
            if value is None:
                continue
            value = value.detach().cpu().contiguous()
            if value.untyped_storage().data_ptr() in seen:  # safetensors refuses tensors sharing memory
                value = value.clone()
            seen.add(value.untyped_storage().data_ptr())
            stored[key] = value
        return stored

    def metadata(self) -> dict[str, str]:
        """The stored strings by key; ``provenance`` as a JSON object."""
        out = {"format": FORMAT, "junk": self.junk, "dataset": self.dataset, "method": self.method}
        if self.provenance is not None:
            out["provenance"] = json.dumps(dict(self.provenance), sort_keys=True, default=str)
        if self.names is not None:
            out["names"] = json.dumps(list(self.names))
        return {k: v for k, v in out.items() if v is not None}
