"""Rendering: an identity seen by a camera -> three pixel-aligned images (RGB, NIR, TIR).

Geometry (pose, placement, background window, occluders) is shared by the three images of a triplet;
photometry is not: night darkens RGB but not TIR, NIR has its own illuminator, TIR is auto-ranged and
false-coloured with extra optical blur. Everything is drawn from the image's key.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from mdreid.data.synthetic.appearance import Identity, Look, scene_looks
from mdreid.data.synthetic.cameras import PANORAMA, Setting, clutter
from mdreid.data.synthetic.primitives import Array, Drawing, Primitive
from mdreid.data.synthetic.streams import keyed_rng


@dataclass(frozen=True)
class Triplet:
    """What one shot of the three cameras gives; ``parts`` is kept for tests and inspection."""

    images: tuple[Array, ...]  # RGB, NIR, TIR (or RGB alone): HxWx3 uint8, pixel-aligned
    parts: Array  # HxW int8: visible object part label (0 = background or occluder)


def native_size(kind: str, rng: np.random.Generator) -> tuple[int, int]:
    """(H, W) of a crop: portrait persons (96-160 x 40-88), roughly 2:1 landscape vehicles (112-176 wide)."""
    if kind == "person":
        h = int(rng.integers(96, 161))
        return h, int(np.clip(round(h * rng.uniform(0.38, 0.55)), 40, 88))
    w = int(rng.integers(112, 177))
    return int(round(w * rng.uniform(0.45, 0.62))), w


def _placement(drawing: Drawing, setting: Setting, rng: np.random.Generator, h: int, w: int) -> Array:
    """The 2x3 affine from object units to pixels: flip, yaw foreshortening, shear, tilt, scale, shift.

    The scale fits the object to a random fraction of the crop like a detector box would, so proportions
    survive while absolute size does not; the shift may cut a few percent of the object off.
    """
    facing = setting.facing if rng.random() < 0.8 else -setting.facing
    yaw = np.clip(setting.yaw + rng.uniform(-0.15, 0.15), 0.0, 1.1)
    stretch = np.diag([facing * math.cos(yaw) * rng.uniform(0.92, 1.08), rng.uniform(0.94, 1.06)])
    shear = np.array([[1.0, rng.uniform(-0.12, 0.12)], [0.0, 1.0]])
    t = rng.uniform(-0.05, 0.05)
    rotate = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    lin = rotate @ shear @ stretch
    b = np.array([p.bounds() for _, p in drawing])
    x0, y0, x1, y1 = b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    corners = (np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]]) - centre) @ lin.T
    ext = corners.max(0) - corners.min(0)
    scale = rng.uniform(0.78, 0.98) * min(w / ext[0], h / ext[1])
    slack = np.array([w, h]) - scale * ext
    offset = np.array([w, h]) / 2 + rng.uniform(-1, 1, 2) * (slack / 2 + 0.04 * np.array([w, h]))
    lin = scale * lin
    return np.column_stack([lin, offset - lin @ centre])


def _stamp(target: Array, value: int, prim: Primitive, u: Array, v: Array, fwd: Array) -> None:
    """Write ``value`` where ``prim`` covers, testing only the pixels of its bounding box (speed)."""
    x0, y0, x1, y1 = prim.bounds()
    corners = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]]) @ fwd.T
    lo = np.floor(corners.min(0)).astype(int)
    hi = np.ceil(corners.max(0)).astype(int) + 1
    cs = slice(max(lo[0], 0), min(hi[0], target.shape[1]))
    rs = slice(max(lo[1], 0), min(hi[1], target.shape[0]))
    if cs.start < cs.stop and rs.start < rs.stop:
        window = target[rs, cs]
        window[prim.inside(u[rs, cs], v[rs, cs])] = value


def _paint(look: Look, mat: Array, u: Array, v: Array) -> Array:
    """Per-pixel material values (H, W, C): the base value, swapped for ``alt`` where the texture is on.

    Textures live in (u, v), so on the object they move with it and on the background with the image.
    """
    out = look.base.astype(np.float32)[mat]
    textured = look.texture[mat] > 0
    if textured.any():
        m, uu, vv = mat[textured], u[textured], v[textured]
        ca, sa = np.cos(look.angle)[m], np.sin(look.angle)[m]
        f, ph, kind = 2 * np.pi * look.freq[m], look.phase[m], look.texture[m]
        w1 = np.sin(f * (uu * ca + vv * sa) + ph)
        w2 = np.sin(f * (vv * ca - uu * sa) + ph)
        on = np.where(kind == 1, w1 > 0, np.where(kind == 2, w1 * w2 > 0, w1 * w2 > 0.5))
        out[textured] = np.where(on[:, None], look.alt[m], out[textured])
    return out


def _iron_palette() -> Array:
    """256x3 uint8 false-colour map black -> purple -> red -> orange -> yellow -> white, like TIR cameras."""
    stops = [0.0, 0.15, 0.35, 0.55, 0.75, 0.9, 1.0]
    colours = np.array(
        [
            [0, 0, 0.02],
            [0.15, 0.04, 0.35],
            [0.45, 0.05, 0.5],
            [0.8, 0.2, 0.3],
            [0.95, 0.5, 0.05],
            [1, 0.8, 0.1],
            [1, 1, 0.85],
        ]
    )
    t = np.linspace(0, 1, 256)
    return (
        (np.stack([np.interp(t, stops, colours[:, c]) for c in range(3)], -1) * 255).round().astype(np.uint8)
    )


IRON = _iron_palette()


def _finish(img: Array, blur: float, low_res: float | None) -> Array:
    """Camera optics on a uint8 grey or RGB image: optional low resolution (down then up) and Gaussian blur."""
    pil = Image.fromarray(img)
    if low_res is not None:
        w, h = pil.size
        small = (max(8, round(w * low_res)), max(8, round(h * low_res)))
        pil = pil.resize(small, Image.BILINEAR).resize((w, h), Image.BILINEAR)
    if blur > 0.05:
        pil = pil.filter(ImageFilter.GaussianBlur(blur))
    return np.asarray(pil)


def _to_u8(x: Array) -> Array:
    return (np.clip(x, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


@dataclass(frozen=True)
class _Canvas:
    """The geometry shared by the three images of a triplet."""

    parts: Array  # (H, W) visible part label, 0 elsewhere
    mat: Array  # (H, W) material index into the concatenated looks
    u: Array  # (H, W) object coordinates of every pixel
    v: Array
    tu: Array  # (H, W) texture coordinates: object units on the object, image-height units elsewhere
    tv: Array
    looks: tuple[Look, Look, Look]  # materials: setting background, image clutter, object parts, occluders


def _compose(identity: Identity, setting: Setting, rng: np.random.Generator, h: int, w: int) -> _Canvas:
    """Place the posed object, then lay out background clutter and occluders around and over it."""
    drawing = identity.shape.drawing(rng)
    fwd = _placement(drawing, setting, rng, h, w)
    inv = np.linalg.inv(np.vstack([fwd, [0, 0, 1]]))[:2].astype(np.float32)
    xs, ys = np.arange(w, dtype=np.float32) + 0.5, np.arange(h, dtype=np.float32)[:, None] + 0.5
    u, v = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2], inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    parts = np.zeros((h, w), np.int8)
    for label, prim in drawing:
        _stamp(parts, label, prim, u, v, fwd)

    # background: a random window onto the setting's clutter strip, plus a few things of this image only
    dx, dy = rng.uniform(0.5 - PANORAMA, PANORAMA - 0.5), rng.uniform(-0.08, 0.08)
    rel_u, rel_v = xs / w - 0.5 + dx, ys / h + dy
    extra = [clutter(rng) for _ in range(rng.integers(0, 3))]
    occluders = [clutter(rng)] if rng.random() < 0.3 else []
    ground = rel_v > setting.horizon + rng.uniform(-0.05, 0.05)
    mat = np.broadcast_to(ground.astype(np.int16), (h, w)).copy()
    for i, prim in enumerate([*setting.clutter, *extra]):  # materials 0, 1: far and ground; 2..: clutter
        mat[np.broadcast_to(prim.inside(rel_u, rel_v), (h, w))] = 2 + i
    n_bg = len(setting.looks[0].texture) + len(extra)
    obj = parts > 0
    mat[obj] = n_bg + parts[obj] - 1
    first_occluder = n_bg + len(identity.looks[0].texture)
    for j, prim in enumerate(occluders):
        hit = np.broadcast_to(prim.inside(rel_u, rel_v), (h, w))
        mat[hit] = first_occluder + j
        parts[hit] = 0
    obj = parts > 0
    near = scene_looks(rng, len(extra) + len(occluders))
    cut = len(extra)

    def materials(m: int) -> Look:  # in ``mat`` order: setting, image clutter, object parts, occluders
        own = near[m]
        return Look.concat(
            [setting.looks[m], own.rows(slice(0, cut)), identity.looks[m], own.rows(slice(cut, None))]
        )

    tu = np.where(obj, u, xs / h)
    tv = np.where(obj, v, np.broadcast_to(ys / h, (h, w)))
    return _Canvas(parts, mat, u, v, tu, tv, (materials(0), materials(1), materials(2)))


def render_triplet(
    identity: Identity,
    setting: Setting,
    key: Sequence[int],
    size: tuple[int, int] | None = None,
    rgb_only: bool = False,
) -> Triplet:
    """Render one RGB/NIR/TIR triplet of ``identity`` seen by ``setting``; ``key`` seeds everything else.

    ``size`` is (H, W); by default a random native crop size of the identity's kind. Geometry is shared by
    the three images; light, white balance, gain, noise and the thermal camera's extra blur are not.
    ``Triplet.parts`` is the object's part map minus occluded pixels. ``rgb_only`` stops after the RGB
    image (the pretraining pool): the same bytes as the triplet's first image, a third of the work.
    """
    rng = keyed_rng(*key)
    h, w = size if size is not None else native_size(identity.kind, rng)
    c = _compose(identity, setting, rng, h, w)
    obj = c.parts > 0
    light = float(np.clip(setting.light * rng.uniform(0.75, 1.3), 0.08, 1.4))
    ang = rng.uniform(0, 2 * np.pi)
    shade = np.where(obj, 1 + rng.uniform(0, 0.3) * (np.cos(ang) * c.u + np.sin(ang) * (c.v - 0.5)), 1.0)
    blur = rng.uniform(0.2, 1.1) * h / 128
    low_res = rng.uniform(0.4, 0.7) if rng.random() < 0.25 else None

    # RGB: reflected daylight, so night and the camera's white balance change it
    albedo = _paint(c.looks[0], c.mat, c.tu, c.tv)
    tint = (setting.tint * rng.uniform(0.93, 1.07, 3)).astype(np.float32)
    rgb = albedo * (shade * light)[..., None] * tint
    rgb += rng.standard_normal(rgb.shape, dtype=np.float32) * (0.02 + (0.05 if light < 0.5 else 0.0))
    rgb_image = _finish(_to_u8(rgb), blur, low_res)
    if rgb_only:
        return Triplet((rgb_image,), c.parts)
    # NIR: active illumination: a gain and distance falloff, no daylight; stored grey in three channels
    falloff = np.where(obj, 1.0, rng.uniform(0.45, 0.85))  # the illuminator lights the near object most
    nir = _paint(c.looks[1], c.mat, c.tu, c.tv)[..., 0] * shade * falloff * rng.uniform(0.75, 1.2)
    nir += rng.standard_normal(nir.shape, dtype=np.float32) * 0.03
    # TIR: emitted heat plus the identity's hot spots, auto-ranged and false-coloured
    heat = _paint(c.looks[2], c.mat, c.tu, c.tv)[..., 0]
    cu, cv, sigma, amp = identity.hot_spots.T
    d2 = (c.u[obj][:, None] - cu) ** 2 + (c.v[obj][:, None] - cv) ** 2
    heat[obj] += (amp * np.exp(-d2 / (2 * sigma**2))).sum(1)
    heat += rng.standard_normal(heat.shape, dtype=np.float32) * 0.02
    lo, hi = rng.uniform(-0.08, 0.1), rng.uniform(0.95, 1.25)
    tir_blur = blur + rng.uniform(0.3, 1.0) * h / 128
    images = (
        rgb_image,
        np.repeat(_finish(_to_u8(nir), blur, low_res)[..., None], 3, -1),
        IRON[_finish(_to_u8((heat - lo) / (hi - lo)), tir_blur, low_res)],  # optics blur heat, not colours
    )
    return Triplet(images, c.parts)
