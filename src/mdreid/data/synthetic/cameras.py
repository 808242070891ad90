"""Cameras and scenes: what a fixed camera (or an MSVR310 scene and view) adds to every image it takes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mdreid.data.synthetic.appearance import Look, scene_looks
from mdreid.data.synthetic.primitives import Array, Box, Capsule, Ellipse, Primitive
from mdreid.data.synthetic.streams import keyed_rng


@dataclass(frozen=True)
class Setting:
    """What a fixed camera (or an MSVR310 scene and view) adds to all its images: background layout and
    materials, light level, RGB white balance, the usual viewing angle and direction of travel."""

    horizon: float
    clutter: tuple[Primitive, ...]  # crop-relative units: a crop spans u in [-0.5, 0.5] + shift, v in [0, 1]
    looks: tuple[Look, Look, Look]  # materials: far background, ground, then one per clutter item
    light: float
    tint: Array  # (3,)
    yaw: float
    facing: int


PANORAMA = 3.0  # half-width of a setting's clutter strip, in crop widths


def clutter(rng: np.random.Generator, span: float = 0.5) -> Primitive:
    """A background or occluding thing (a block, a pole or a bush) somewhere in ``u`` within +-``span``."""
    kind = rng.integers(3)
    if kind == 0:
        x, y = rng.uniform(-span - 0.1, span - 0.1), rng.uniform(-0.1, 0.8)
        return Box(x, y, x + rng.uniform(0.1, 0.6), y + rng.uniform(0.1, 0.5))
    if kind == 1:
        x = rng.uniform(-span, span)
        return Capsule(x, rng.uniform(-0.2, 0.5), x + rng.uniform(-0.05, 0.05), 1.2, rng.uniform(0.01, 0.04))
    return Ellipse(
        rng.uniform(-span, span), rng.uniform(0.3, 1.0), rng.uniform(0.1, 0.4), rng.uniform(0.05, 0.2)
    )


def make_setting(kind: str, key: Sequence[int]) -> Setting:
    """The camera/scene for ``key``: about one in four is a night setting, where RGB gets dark and noisy.

    Its clutter spans a wide strip and each crop sees a random window of it, as crops taken at different
    places of one camera's frame do; a layout repeated in every crop would identify the camera instead.
    """
    rng = keyed_rng(*key)
    items = tuple(clutter(rng, PANORAMA) for _ in range(rng.integers(8, 16)))
    tint = rng.uniform(0.8, 1.2, 3)
    return Setting(
        horizon=rng.uniform(0.25, 0.75),
        clutter=items,
        looks=scene_looks(rng, len(items) + 2),
        light=1.0 if rng.random() < 0.75 else rng.uniform(0.25, 0.5),
        tint=tint / tint.mean(),
        yaw=rng.uniform(0.0, 0.35 if kind == "person" else 1.0),
        facing=int(rng.choice([-1, 1])),
    )
