"""Do the maps mean something? The share of a map's mass inside a known box, next to the box's share of the
image: a map that points at the box puts far more than its area share there, a blind one about its share."""

from __future__ import annotations

import numpy as np

from mdreid.data.synthetic.cue import CUE_BOX, box_pixels
from mdreid.process.errors import MDReIDError


def area_share(height: int, width: int, box: tuple[float, float, float, float] = CUE_BOX) -> float:
    """The fraction of an image's pixels inside ``box`` (as rounded to pixels)."""
    rows, cols = box_pixels(height, width, box)
    return (rows.stop - rows.start) * (cols.stop - cols.start) / (height * width)


def box_mass(cam: np.ndarray, box: tuple[float, float, float, float] = CUE_BOX) -> float:
    """The fraction of ``cam``'s (non-negative) mass inside ``box``; a map with no mass is an error."""
    if cam.ndim != 2 or (cam < 0).any():
        raise MDReIDError(f"box_mass: a non-negative [H, W] map is needed, got shape {cam.shape}")
    total = float(cam.sum())
    if total <= 0:
        raise MDReIDError("box_mass: the map has no mass (all zero); nothing to locate")
    rows, cols = box_pixels(*cam.shape, box)
    return float(cam[rows, cols].sum()) / total
