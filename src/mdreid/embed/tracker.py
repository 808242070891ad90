"""A tracker's appearance model: boxmot's backend contract, ``get_features(xyxys, img) -> (N, D)`` numpy rows
of unit length, served by an mdreid model over whichever of R, N, T a frame has.

``img`` is one frame (BGR ``uint8`` as OpenCV and boxmot give it, read as the RGB camera's) or a dict of
aligned frames ``{"rgb": ..., "nir": ..., "tir": ...}`` where a camera without a frame (RGB at night) is
None or left out. A tracker compares each detection's vector with its tracks' past vectors by cosine, so
one vector must stay comparable when the modalities present change: it is the mean of the detection's
L2-normalised *shared* features over its present modalities, normalised again. The dot product of two such
vectors is the shared term of the metric's ``paper`` rule (the mean cosine over all modality pairs) up to
the norms of the means, and the shared features are the ones trained to match across modalities.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from mdreid.embed.embedder import ARGUMENTS, Embedder
from mdreid.process.errors import MDReIDError


def shared_vectors(sh: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """``[N, D]``: the unit mean of each row's unit shared features over its present modalities (a row with
    none present is zeros: no appearance)."""
    unit = sh / sh.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    mean = (unit * present[..., None]).sum(dim=1)
    return mean / mean.norm(dim=-1, keepdim=True).clamp_min(1e-12)


class MultiSpectralBackend:
    """``get_features(xyxys, img)`` for a tracker; ``modalities`` limits the cameras used (e.g. ``("rgb",)``
    for an RGB-only model), ``camid`` is the cameras' id for the model (None: no camera embedding)."""

    def __init__(
        self,
        embedder: Embedder,
        modalities: Sequence[str] = ARGUMENTS,
        camid: int | None = None,
        bgr: bool = True,
    ) -> None:
        unknown = sorted(set(modalities) - set(ARGUMENTS))
        if unknown or not modalities:
            raise MDReIDError(
                f"modalities={list(modalities)}: use a non-empty subset of {', '.join(ARGUMENTS)}"
            )
        self.embedder, self.modalities, self.camid, self.bgr = embedder, tuple(modalities), camid, bgr
        probe = embedder.embed(rgb=np.zeros((8, 8, 3), np.uint8))
        self.dim = int(probe.sh.shape[-1])

    def _frames(self, img: Any) -> dict[str, np.ndarray]:
        if isinstance(img, Mapping):
            unknown = sorted(set(img) - set(ARGUMENTS))
            if unknown:
                raise MDReIDError(f"get_features: frame key {unknown[0]!r}; use {', '.join(ARGUMENTS)}")
            frames = {m: np.asarray(f) for m, f in img.items() if f is not None}
        else:  # one BGR frame (boxmot, OpenCV): the RGB camera's
            frame = np.asarray(img)
            frames = {"rgb": frame[..., ::-1] if self.bgr and frame.ndim == 3 else frame}
        frames = {m: f for m, f in frames.items() if m in self.modalities}
        sizes = {f.shape[:2] for f in frames.values()}
        if len(sizes) > 1:
            raise MDReIDError(
                f"get_features: the frames have different sizes {sorted(sizes)}; they must be aligned"
            )
        return frames

    def get_features(self, xyxys: Any, img: Any) -> np.ndarray:
        """``(N, D)`` float32 unit rows for the ``(N, 4)`` boxes ``x1, y1, x2, y2`` (pixels; cut to the frame,
        as boxmot does for a predicted box that strays outside); zeros where no used camera has a frame."""
        boxes = np.asarray(xyxys, dtype=np.float64).reshape(-1, 4)
        frames = self._frames(img)
        if len(boxes) == 0 or not frames:
            return np.zeros((len(boxes), self.dim), dtype=np.float32)
        height, width = next(iter(frames.values())).shape[:2]
        x1, y1 = np.clip(np.round(boxes[:, :2]), 0, [width, height]).astype(int).T
        x2, y2 = np.clip(np.round(boxes[:, 2:]), 0, [width, height]).astype(int).T
        empty = np.flatnonzero((x2 <= x1) | (y2 <= y1))
        if len(empty):
            raise MDReIDError(
                f"get_features: box {boxes[empty[0]].tolist()} has no pixels inside the {width}x{height} frame"
            )
        crops = {
            m: [np.ascontiguousarray(f[b:d, a:c]) for a, b, c, d in zip(x1, y1, x2, y2, strict=True)]
            for m, f in frames.items()
        }
        out = self.embedder.embed(**crops, camid=self.camid)
        return shared_vectors(out.sh, out.present).numpy().astype(np.float32)
