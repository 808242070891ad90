"""Appearance: what each modality sees of an identity's materials, and the coupling between modalities.

Every modality paints the identity's parts from its OWN random stream: RGB colours and textures, NIR grey
reflectances and patterns, TIR heat levels. How much NIR and TIR follow RGB is the ``coupling`` knob
(docs/datasets.md, "Synthetic sensors"): each material follows RGB with probability ``coupling``, and
otherwise keeps its independent look.

- A following material keeps RGB's texture geometry (kind, frequency, angle, phase) in NIR and TIR: prints
  and stripes stay where they are. Its NIR levels come from its RGB colours through a dye response: an
  absorbing dye tracks RGB brightness, an IR-transparent dye is bright in NIR whatever its colour (so a dark
  RGB dye can be bright in NIR). TIR keeps its own heat levels and low contrast, so the pattern is faint.
- ``coupling=0`` is full independence: only the shape carries across modalities, and the images are
  byte-identical to those of a generator without the knob (the coupling stream is never drawn from).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from mdreid.data.synthetic.primitives import Array
from mdreid.data.synthetic.shapes import SHAPES, Shape
from mdreid.data.synthetic.streams import COUPLING, NIR, RGB, SHAPE, TIR, keyed_rng


@dataclass(frozen=True)
class Look:
    """Appearance of M materials in one modality: a base value, a second value mixed in by a texture."""

    base: Array  # (M, C): RGB colour (C=3), or grey reflectance / heat (C=1)
    alt: Array  # (M, C)
    texture: Array  # (M,) 0 plain, 1 stripes, 2 checks, 3 dots
    freq: Array  # (M,) cycles per unit length
    angle: Array  # (M,)
    phase: Array  # (M,)

    def rows(self, which: slice) -> Look:
        return Look(*(getattr(self, f)[which] for f in _LOOK_FIELDS))

    @staticmethod
    def concat(looks: Sequence[Look]) -> Look:
        return Look(*(np.concatenate([getattr(lk, f) for lk in looks]) for f in _LOOK_FIELDS))


_LOOK_FIELDS = ("base", "alt", "texture", "freq", "angle", "phase")


def _hsv(h: Array, s: Array, v: Array) -> Array:
    """HSV in [0,1] to RGB (n, 3), vectorised."""
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = np.stack(
        [np.stack(c, -1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))]
    )
    return table[i, np.arange(len(h))]


# RGB colour families as (hue, saturation, value) ranges
_RGB_STYLES: dict[str, tuple[tuple[float, float], ...]] = {
    "cloth": ((0, 1), (0.0, 0.95), (0.1, 0.95)),
    "skin": ((0.02, 0.1), (0.25, 0.6), (0.35, 0.95)),
    "hair": ((0.04, 0.12), (0.2, 0.7), (0.05, 0.7)),
    "shoe": ((0, 1), (0.0, 0.5), (0.05, 0.9)),
    "paint": ((0, 1), (0.0, 0.9), (0.05, 0.95)),
    "glass": ((0.5, 0.7), (0.05, 0.4), (0.05, 0.35)),
    "black": ((0, 1), (0.0, 0.2), (0.02, 0.15)),
    "metal": ((0, 1), (0.0, 0.3), (0.2, 0.9)),
    "lamp": ((0.0, 0.15), (0.0, 0.7), (0.6, 1.0)),
    "scene": ((0, 1), (0.0, 0.35), (0.2, 0.7)),
}

# per part: (RGB style, NIR reflectance range, TIR heat range, RGB texture prob, NIR texture prob)
_PART_LOOKS: dict[str, tuple[tuple[str, tuple[float, float], tuple[float, float], float, float], ...]] = {
    "person": (
        ("skin", (0.55, 0.9), (0.75, 0.98), 0.0, 0.0),
        ("hair", (0.1, 0.6), (0.45, 0.7), 0.0, 0.0),
        ("cloth", (0.08, 0.92), (0.4, 0.75), 0.5, 0.5),
        ("cloth", (0.08, 0.92), (0.35, 0.7), 0.4, 0.4),
        ("shoe", (0.05, 0.6), (0.25, 0.5), 0.0, 0.0),
        ("cloth", (0.08, 0.92), (0.1, 0.4), 0.3, 0.3),
        ("cloth", (0.08, 0.92), (0.3, 0.6), 0.3, 0.3),
    ),
    "vehicle": (
        ("paint", (0.1, 0.95), (0.25, 0.55), 0.35, 0.35),
        ("glass", (0.02, 0.6), (0.05, 0.3), 0.3, 0.3),
        ("black", (0.02, 0.2), (0.35, 0.85), 0.0, 0.0),
        ("metal", (0.2, 0.9), (0.3, 0.75), 0.0, 0.0),
        ("lamp", (0.4, 1.0), (0.3, 0.9), 0.0, 0.0),
        ("black", (0.05, 0.6), (0.25, 0.6), 0.0, 0.0),
        ("cloth", (0.1, 0.9), (0.15, 0.5), 0.3, 0.3),
    ),
}


def _texture(rng: np.random.Generator, prob: Array, freq: tuple[float, float]) -> tuple[Array, ...]:
    n = len(prob)
    kind = np.where(rng.random(n) < prob, rng.integers(1, 4, n), 0)
    return kind, rng.uniform(*freq, n), rng.uniform(0, np.pi, n), rng.uniform(0, 2 * np.pi, n)


def _rgb(rng: np.random.Generator, styles: Sequence[str]) -> Array:
    hsv = np.array([[rng.uniform(*r) for r in _RGB_STYLES[s]] for s in styles]).reshape(len(styles), 3)
    return _hsv(hsv[:, 0], hsv[:, 1], hsv[:, 2])


def _scalar_look(
    rng: np.random.Generator,
    lo: Array,
    hi: Array,
    contrast: tuple[float, float],
    prob: Array,
    freq: tuple[float, float],
) -> Look:
    """Grey reflectance (NIR) or heat (TIR): one value per material, a contrasting value for its pattern."""
    base = rng.uniform(lo, hi)
    alt = np.clip(base + rng.choice([-1, 1], len(base)) * rng.uniform(*contrast, len(base)), 0, 1)
    return Look(base[:, None], alt[:, None], *_texture(rng, prob, freq))


def _part_looks(kind: str, rng: np.random.Generator, modality: int) -> Look:
    """Appearance of the identity's parts in one modality, drawn from that modality's own stream."""
    table = _PART_LOOKS[kind]
    styles, nir, tir, p_rgb, p_nir = (list(col) for col in zip(*table, strict=True))
    freq = (8.0, 20.0) if kind == "person" else (6.0, 16.0)
    if modality == 0:
        base, alt = _rgb(rng, styles), _rgb(rng, styles)
        return Look(base, alt, *_texture(rng, np.array(p_rgb), freq))
    if modality == 1:
        lo, hi = np.array(nir).T
        return _scalar_look(rng, lo, hi, (0.15, 0.4), np.array(p_nir), freq)
    lo, hi = np.array(tir).T
    return _scalar_look(rng, lo, hi, (0.03, 0.1), np.full(len(table), 0.15), (2.0, 6.0))


def scene_looks(rng: np.random.Generator, n: int) -> tuple[Look, Look, Look]:
    """Background materials: muted colours, mid greys and cool heat, with rare low-contrast textures.

    Clutter must not out-shout the object: with loud backgrounds that repeat per camera, a small model
    trained briefly matches cameras instead of identities (it stayed at chance in a probe).
    """
    prob, freq = np.full(n, 0.2), (3.0, 12.0)
    base = _rgb(rng, ["scene"] * n)
    rgb = Look(base, np.clip(base * rng.uniform(0.75, 1.25, (n, 1)), 0, 1), *_texture(rng, prob, freq))
    nir = _scalar_look(rng, np.full(n, 0.15), np.full(n, 0.75), (0.05, 0.15), prob, freq)
    warm = rng.random(n) < 0.1
    tir = _scalar_look(rng, np.where(warm, 0.25, 0.0), np.where(warm, 0.5, 0.3), (0.02, 0.06), prob / 2, freq)
    return rgb, nir, tir


@dataclass(frozen=True)
class Identity:
    """One object: a shape (shared cue) and the part looks of each modality (specific cues)."""

    kind: str
    shape: Shape
    looks: tuple[Look, Look, Look]  # RGB, NIR, TIR; row p-1 paints part p
    hot_spots: Array  # (A, 4): u, v, sigma, heat added in TIR


# NIR response of a following material's dye, as (gain on RGB luminance, offset): absorbing or IR-transparent
_DYES = np.array([[0.9, 0.05], [0.3, 0.6]])
_LUMA = np.array([0.299, 0.587, 0.114])


def _couple(
    kind: str, rgb: Look, nir: Look, tir: Look, rng: np.random.Generator, coupling: float
) -> tuple[Look, Look]:
    """NIR and TIR looks whose following materials (probability ``coupling`` each) derive from RGB."""
    n = len(rgb.texture)
    follow = rng.random(n) < coupling
    dye = _DYES[rng.integers(0, 2, n)]
    lo, hi = np.array([row[1] for row in _PART_LOOKS[kind]]).T
    f = follow[:, None]

    def response(colour: Array) -> Array:
        return np.clip(dye[:, :1] * (colour @ _LUMA)[:, None] + dye[:, 1:], lo[:, None], hi[:, None])

    geometry = {
        k: np.where(follow, getattr(rgb, k), getattr(nir, k)) for k in ("texture", "freq", "angle", "phase")
    }
    nir = Look(np.where(f, response(rgb.base), nir.base), np.where(f, response(rgb.alt), nir.alt), **geometry)
    tir = replace(tir, **{k: np.where(follow, getattr(rgb, k), getattr(tir, k)) for k in geometry})
    return nir, tir


def make_identity(kind: str, key: Sequence[int], coupling: float = 0.0) -> Identity:
    """The identity for ``key``: a shape and three looks from independent streams, coupled by ``coupling``."""
    if not 0.0 <= coupling <= 1.0:
        raise ValueError(f"coupling={coupling} must lie in [0, 1]")
    shape = SHAPES[kind].sample(keyed_rng(*key, SHAPE))
    rgb, nir, tir_look = (_part_looks(kind, keyed_rng(*key, s), m) for m, s in enumerate((RGB, NIR, TIR)))
    if coupling > 0:
        nir, tir_look = _couple(kind, rgb, nir, tir_look, keyed_rng(*key, COUPLING), coupling)
    tir = keyed_rng(*key, TIR, 1)
    anchors = shape.hot_anchors()
    n = len(anchors)
    amp = np.where(tir.random(n) < 0.6, tir.uniform(0.08, 0.25, n), 0.0)
    spots = np.column_stack([anchors + tir.normal(0, 0.02, (n, 2)), tir.uniform(0.04, 0.12, n), amp])
    return Identity(kind, shape, (rgb, nir, tir_look), spots)
