"""Procedural renderer of the synthetic tri-modal benchmark: identity -> shared shape and modality-specific
appearance -> three pixel-aligned images (RGB, NIR, TIR).

The design makes MDReID's premise hold by construction:

- SHARED cue: the object's shape and part layout (person proportions, clothing cut, hair, hat, bag; vehicle
  type, proportions, cabin, wheels, accessories). One part-label map is drawn per triplet and all three
  modalities are painted from it, so silhouettes and part boundaries coincide pixel for pixel.
- SPECIFIC cues: every modality paints the parts from its OWN random stream of the identity: RGB colours and
  textures, NIR grey reflectances and patterns, TIR heat levels and hot spots shown in an iron palette.
  The streams are independent, so one modality's appearance says nothing about another's and cross-modal
  matching can only go through the shape.
- Nuisances: per-image pose, viewpoint (flip, yaw foreshortening, shear, rotation), scale, shift, background
  clutter (a random window onto the camera's or scene's clutter strip), occluders, illumination (night
  darkens RGB, not TIR), shading, low resolution, blur and noise. Geometry is shared by the three images of
  a triplet; photometry is not.

Everything is drawn from numpy Generators keyed by integer tuples, so an image depends only on its key.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image, ImageFilter

KINDS: tuple[str, ...] = ("person", "vehicle")
PERSON_PARTS: tuple[str, ...] = ("skin", "hair", "upper", "lower", "shoes", "bag", "hat")
VEHICLE_PARTS: tuple[str, ...] = ("body", "window", "tyre", "rim", "light", "trim", "extra")

# independent random streams of one identity: the shape and one appearance stream per modality
_SHAPE, _RGB, _NIR, _TIR = range(4)

Array = np.ndarray


def keyed_rng(*key: int) -> np.random.Generator:
    """A Generator that depends only on ``key`` (non-negative ints), never on call order or process."""
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


# ------------------------------------------------------------------------------------------ primitives
# Each primitive tests membership on broadcastable coordinate arrays and reports its bounding box, so the
# same code draws object parts (object units) and background clutter (image-relative units).


@dataclass(frozen=True)
class Ellipse:
    cx: float
    cy: float
    rx: float
    ry: float

    def inside(self, u: Array, v: Array) -> Array:
        return ((u - self.cx) / self.rx) ** 2 + ((v - self.cy) / self.ry) ** 2 <= 1.0

    def bounds(self) -> tuple[float, float, float, float]:
        return self.cx - self.rx, self.cy - self.ry, self.cx + self.rx, self.cy + self.ry


@dataclass(frozen=True)
class Capsule:
    """A segment thickened by radius ``r``: limbs, poles, straps."""

    x0: float
    y0: float
    x1: float
    y1: float
    r: float

    def inside(self, u: Array, v: Array) -> Array:
        ax, ay = self.x1 - self.x0, self.y1 - self.y0
        du, dv = u - self.x0, v - self.y0
        t = np.clip((du * ax + dv * ay) / max(ax * ax + ay * ay, 1e-12), 0.0, 1.0)
        return (du - t * ax) ** 2 + (dv - t * ay) ** 2 <= self.r**2

    def bounds(self) -> tuple[float, float, float, float]:
        r = self.r
        return (
            min(self.x0, self.x1) - r,
            min(self.y0, self.y1) - r,
            max(self.x0, self.x1) + r,
            max(self.y0, self.y1) + r,
        )


@dataclass(frozen=True)
class Box:
    """An axis-aligned box with corners rounded by ``r``."""

    x0: float
    y0: float
    x1: float
    y1: float
    r: float = 0.0

    def inside(self, u: Array, v: Array) -> Array:
        qx = np.abs(u - (self.x0 + self.x1) / 2) - ((self.x1 - self.x0) / 2 - self.r)
        qy = np.abs(v - (self.y0 + self.y1) / 2) - ((self.y1 - self.y0) / 2 - self.r)
        return np.maximum(qx, 0.0) ** 2 + np.maximum(qy, 0.0) ** 2 <= self.r**2

    def bounds(self) -> tuple[float, float, float, float]:
        return self.x0, self.y0, self.x1, self.y1


@dataclass(frozen=True)
class Polygon:
    """A convex polygon (either winding): torsos, skirts, cabins, windows."""

    points: tuple[tuple[float, float], ...]

    def inside(self, u: Array, v: Array) -> Array:
        pts = self.points
        area = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1], strict=True))
        sign = 1.0 if area >= 0 else -1.0
        result = None
        for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1], strict=True):
            edge = sign * ((x1 - x0) * (v - y0) - (y1 - y0) * (u - x0)) >= 0
            result = edge if result is None else result & edge
        return result

    def bounds(self) -> tuple[float, float, float, float]:
        xs, ys = zip(*self.points, strict=True)
        return min(xs), min(ys), max(xs), max(ys)


class Primitive(Protocol):
    def inside(self, u: Array, v: Array) -> Array: ...

    def bounds(self) -> tuple[float, float, float, float]: ...


Drawing = list[tuple[int, Primitive]]  # (part label 1..P, primitive), back to front


# ------------------------------------------------------------------------------------------- shapes
# The shared cue. Person units: height 1 (head top v=0, soles v=1), u centred, facing +u.
# Vehicle units: length 1 (rear u=-0.5, front u=+0.5), roof v=0, v grows towards the ground.


@dataclass(frozen=True)
class PersonShape:
    head: float
    neck: float
    shoulder: float
    waist: float
    torso: float
    leg: float
    arm: float
    arm_len: float
    arm_out: float
    stance: float
    lower: int  # 0 trousers, 1 shorts, 2 skirt, 3 long coat
    hem: float  # skirt / coat length below the hip
    flare: float
    long_sleeves: bool
    hair: int  # 0 short, 1 long, 2 bun
    hair_len: float
    hat: int  # 0 none, 1 cap, 2 beanie
    bag: int  # 0 none, 1 backpack, 2 shoulder bag, 3 hand bag
    bag_size: float
    bag_side: int
    shoe: float

    @classmethod
    def sample(cls, rng: np.random.Generator) -> PersonShape:
        u = rng.uniform
        return cls(
            head=u(0.05, 0.085), neck=u(0.005, 0.025), shoulder=u(0.075, 0.17), waist=u(0.05, 0.13),
            torso=u(0.22, 0.34), leg=u(0.025, 0.055), arm=u(0.02, 0.035), arm_len=u(0.28, 0.36),
            arm_out=u(0.03, 0.25), stance=u(0.0, 0.06),
            lower=int(rng.choice(4, p=[0.35, 0.2, 0.25, 0.2])), hem=u(0.12, 0.35), flare=u(0.01, 0.08),
            long_sleeves=bool(rng.random() < 0.6),
            hair=int(rng.choice(3, p=[0.5, 0.3, 0.2])), hair_len=u(0.06, 0.2),
            hat=int(rng.choice(3, p=[0.55, 0.25, 0.2])),
            bag=int(rng.choice(4, p=[0.35, 0.3, 0.2, 0.15])), bag_size=u(0.1, 0.2),
            bag_side=int(rng.choice([-1, 1])), shoe=u(0.03, 0.06),
        )  # fmt: skip

    def drawing(self, rng: np.random.Generator) -> Drawing:
        """Primitives for one pose: arm swing and foot placement change per image, proportions do not."""
        skin, hair, upper, lower, shoes, bag, hat = range(1, len(PERSON_PARTS) + 1)
        r, yh = self.head, self.head
        ys = 2 * r + self.neck
        yhip = ys + self.torso
        yfoot = 0.985
        out: Drawing = []
        if self.hair == 1:
            out.append((hair, Box(-1.05 * r, yh, 1.05 * r, ys + self.hair_len, 0.5 * r)))
        if self.bag == 1:
            cx, hw = self.bag_side * 0.5 * self.shoulder, 0.5 * (self.shoulder + self.bag_size)
            out.append((bag, Box(cx - hw, ys + 0.01, cx + hw, ys + 0.85 * self.torso, 0.02)))
        for side in (-1, 1):
            top_u = side * (self.waist - self.leg)
            foot_u = side * (self.waist - 0.8 * self.leg + self.stance) + rng.uniform(-0.05, 0.05)
            knee = 0.45 if self.lower == 1 else 1.0
            knee_u, knee_v = top_u + knee * (foot_u - top_u), yhip + knee * (yfoot - yhip)
            out.append((lower if self.lower != 2 else skin, Capsule(top_u, yhip, knee_u, knee_v, self.leg)))
            if knee < 1.0:
                out.append((skin, Capsule(knee_u, knee_v, foot_u, yfoot, 0.8 * self.leg)))
            out.append((shoes, Ellipse(foot_u + 0.4 * self.shoe, yfoot - 0.012, self.shoe, 0.022)))
        out.append((lower, Box(-self.waist, yhip - 0.03, self.waist, yhip + 0.05, 0.02)))
        flared = self.waist + self.flare
        if self.lower == 2:
            skirt = (
                (-self.waist, yhip - 0.03),
                (self.waist, yhip - 0.03),
                (flared, yhip + self.hem),
                (-flared, yhip + self.hem),
            )
            out.append((lower, Polygon(skirt)))
        if self.lower == 3:
            coat = (
                (-self.shoulder, ys + 0.02),
                (self.shoulder, ys + 0.02),
                (flared, yhip + self.hem),
                (-flared, yhip + self.hem),
            )
            out.append((upper, Polygon(coat)))
        torso = (
            (-self.shoulder, ys + 0.015),
            (self.shoulder, ys + 0.015),
            (self.waist, yhip),
            (-self.waist, yhip),
        )
        out.append((upper, Polygon(torso)))
        inner = self.shoulder - self.arm
        out.append((upper, Capsule(-inner, ys + 0.9 * self.arm, inner, ys + 0.9 * self.arm, 1.1 * self.arm)))
        out.append((skin, Box(-0.35 * r, yh + 0.6 * r, 0.35 * r, ys + 0.02)))
        hands = {}
        for side in (-1, 1):
            angle = side * (self.arm_out + rng.uniform(-0.12, 0.2))
            sx, sy = side * (self.shoulder - 0.9 * self.arm), ys + self.arm
            ex, ey = sx + math.sin(angle) * self.arm_len, sy + math.cos(angle) * self.arm_len
            cut = 1.0 if self.long_sleeves else 0.4
            mx, my = sx + cut * (ex - sx), sy + cut * (ey - sy)
            out.append((upper, Capsule(sx, sy, mx, my, self.arm)))
            if cut < 1.0:
                out.append((skin, Capsule(mx, my, ex, ey, 0.85 * self.arm)))
            out.append((skin, Ellipse(ex, ey, 1.15 * self.arm, 1.15 * self.arm)))
            hands[side] = (ex, ey)
        out.append((skin, Ellipse(0.0, yh, 0.85 * r, r)))
        out.append((hair, Ellipse(0.0, yh - 0.45 * r, 0.92 * r, 0.62 * r)))
        if self.hair == 2:
            out.append((hair, Ellipse(-0.8 * r, yh - 0.4 * r, 0.42 * r, 0.42 * r)))
        if self.hat == 1:
            out += [
                (hat, Ellipse(0.0, yh - 0.5 * r, 0.98 * r, 0.6 * r)),
                (hat, Box(0.0, yh - 0.3 * r, 1.6 * r, yh - 0.12 * r)),
            ]
        elif self.hat == 2:
            out.append((hat, Ellipse(0.0, yh - 0.55 * r, 0.95 * r, 0.75 * r)))
        s, size = self.bag_side, self.bag_size
        if self.bag == 2:
            cx = s * (self.waist + 0.35 * size)
            out.append((bag, Capsule(-s * 0.7 * self.shoulder, ys, cx, yhip - 0.02, 0.008)))
            out.append(
                (bag, Box(cx - 0.5 * size, yhip - 0.03, cx + 0.5 * size, yhip + 0.05 + 0.4 * size, 0.01))
            )
        elif self.bag == 3:
            hx, hy = hands[s]
            out.append((bag, Box(hx - 0.45 * size, hy, hx + 0.45 * size, hy + 1.1 * size, 0.01)))
        return out

    def hot_anchors(self) -> Array:
        """Where body heat may concentrate: chest, belly, neck, thighs."""
        ys = 2 * self.head + self.neck
        mid = ys + 0.5 * self.torso
        return np.array([[0.0, ys + 0.08], [0.0, mid + 0.05], [0.0, ys], [0.0, ys + self.torso + 0.1]])


# vehicle types: (body_h, cabin_h, cabin rear cb, cabin front cf, roof inset rear, roof inset front, wheel r)
# fmt: off
_VEHICLE_TYPES: dict[str, tuple[tuple[float, float], ...]] = {
    "sedan": ((0.15, 0.19), (0.11, 0.15), (-0.32, -0.22), (0.12, 0.24), (0.08, 0.15), (0.12, 0.2), (0.065, 0.085)),
    "hatchback": ((0.15, 0.19), (0.13, 0.17), (-0.46, -0.4), (0.08, 0.2), (0.01, 0.07), (0.12, 0.2), (0.065, 0.085)),
    "suv": ((0.19, 0.25), (0.15, 0.19), (-0.47, -0.43), (0.12, 0.22), (0.0, 0.04), (0.08, 0.14), (0.08, 0.1)),
    "van": ((0.2, 0.26), (0.24, 0.32), (-0.48, -0.46), (0.3, 0.4), (0.0, 0.02), (0.05, 0.12), (0.07, 0.09)),
    "pickup": ((0.17, 0.22), (0.15, 0.19), (-0.12, -0.02), (0.15, 0.25), (0.0, 0.03), (0.08, 0.14), (0.08, 0.1)),
    "truck": ((0.2, 0.27), (0.22, 0.3), (0.12, 0.22), (0.46, 0.48), (0.0, 0.01), (0.0, 0.05), (0.075, 0.095)),
}
# fmt: on


@dataclass(frozen=True)
class VehicleShape:
    kind: str  # a key of _VEHICLE_TYPES
    body_h: float
    cabin_h: float
    cb: float
    cf: float
    rb: float
    rf: float
    wheel: float
    rim: float
    clearance: float
    axles: tuple[float, ...]
    corner: float
    windows: int
    bumper: float
    lamp: float
    cargo: float  # truck box height above the cab roof (0 elsewhere)
    rack: bool
    spoiler: bool

    @classmethod
    def sample(cls, rng: np.random.Generator) -> VehicleShape:
        u = rng.uniform
        kind = str(rng.choice(list(_VEHICLE_TYPES), p=[0.3, 0.2, 0.2, 0.1, 0.1, 0.1]))
        body_h, cabin_h, cb, cf, rb, rf, wheel = (u(lo, hi) for lo, hi in _VEHICLE_TYPES[kind])
        axles = (u(0.27, 0.36), u(-0.37, -0.26))
        if kind == "truck":
            axles += (axles[1] + u(0.16, 0.22),)
        return cls(
            kind=kind, body_h=body_h, cabin_h=cabin_h, cb=cb, cf=cf, rb=cb + rb, rf=cf - rf, wheel=wheel,
            rim=u(0.45, 0.7), clearance=u(0.03, 0.07), axles=axles, corner=u(0.02, 0.06),
            windows=int(rng.integers(1, 4)), bumper=u(0.03, 0.06), lamp=u(0.03, 0.07),
            cargo=u(0.08, 0.2) if kind == "truck" else 0.0,
            rack=bool(rng.random() < 0.25), spoiler=bool(rng.random() < 0.2),
        )  # fmt: skip

    def drawing(self, rng: np.random.Generator) -> Drawing:
        """Primitives of the side view; only the front wheel's steering (its apparent width) varies per image."""
        body, window, tyre, rim, light, trim, extra = range(1, len(VEHICLE_PARTS) + 1)
        belt, sill = self.cabin_h, self.cabin_h + self.body_h
        ground = sill + self.clearance
        out: Drawing = []
        if self.cargo:
            out.append((extra, Box(-0.5, -self.cargo, self.cb - 0.015, sill - 0.01, 0.01)))
        out.append(
            (body, Polygon(((self.cb, belt + 0.01), (self.rb, 0.0), (self.rf, 0.0), (self.cf, belt + 0.01))))
        )
        m = 0.02
        glass = ((self.cb + 1.5 * m, belt), (self.rb + m, m), (self.rf - m, m), (self.cf - 1.5 * m, belt))
        out.append((window, Polygon(glass)))
        for k in range(1, self.windows):
            p = self.rb + k * (self.rf - self.rb) / self.windows
            out.append((body, Box(p - 0.012, 0.0, p + 0.012, belt)))
        out.append((body, Box(-0.5, belt, 0.5, sill, self.corner)))
        out.append((trim, Box(0.5 - 0.07, sill - self.bumper, 0.505, sill, 0.01)))
        out.append((trim, Box(-0.505, sill - self.bumper, -0.5 + 0.07, sill, 0.01)))
        out.append((trim, Box(self.cf - 0.035, belt - 0.03, self.cf, belt + 0.005, 0.005)))
        out.append((light, Box(0.5 - self.lamp, belt + 0.015, 0.5, belt + 0.045, 0.008)))
        out.append((light, Box(-0.5, belt + 0.015, -0.5 + 0.6 * self.lamp, belt + 0.05, 0.008)))
        if self.rack:
            out.append((extra, Box(self.rb + 0.02, -0.028, self.rf - 0.02, -0.012)))
            out += [(extra, Box(x - 0.006, -0.015, x + 0.006, 0.0)) for x in (self.rb + 0.04, self.rf - 0.04)]
        if self.spoiler:
            out.append((extra, Box(-0.5, belt - 0.03, -0.4, belt - 0.005, 0.006)))
        steer = rng.uniform(0.8, 1.0)
        for i, ax in enumerate(self.axles):
            squeeze = steer if i == 0 else 1.0
            out.append((tyre, Ellipse(ax, ground - self.wheel, squeeze * self.wheel, self.wheel)))
            out.append(
                (
                    rim,
                    Ellipse(ax, ground - self.wheel, squeeze * self.rim * self.wheel, self.rim * self.wheel),
                )
            )
        return out

    def hot_anchors(self) -> Array:
        """Where heat may concentrate: front engine, rear engine, exhaust, cabin, brakes."""
        belt, sill = self.cabin_h, self.cabin_h + self.body_h
        ground = sill + self.clearance
        return np.array(
            [
                [0.38, belt + 0.4 * self.body_h],
                [-0.38, belt + 0.4 * self.body_h],
                [-0.46, sill],
                [0.5 * (self.rb + self.rf), 0.5 * belt],
                [self.axles[0], ground - self.wheel],
            ]
        )


Shape = PersonShape | VehicleShape
_SHAPES: dict[str, type[PersonShape] | type[VehicleShape]] = {"person": PersonShape, "vehicle": VehicleShape}


# ------------------------------------------------------------------------------------------- looks


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


def _scene_looks(rng: np.random.Generator, n: int) -> tuple[Look, Look, Look]:
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


def make_identity(kind: str, key: Sequence[int]) -> Identity:
    """The identity for ``key``; its shape and each modality's looks come from four independent streams."""
    shape = _SHAPES[kind].sample(keyed_rng(*key, _SHAPE))
    rgb, nir, tir_look = (_part_looks(kind, keyed_rng(*key, s), m) for m, s in enumerate((_RGB, _NIR, _TIR)))
    tir = keyed_rng(*key, _TIR, 1)
    anchors = shape.hot_anchors()
    n = len(anchors)
    amp = np.where(tir.random(n) < 0.6, tir.uniform(0.08, 0.25, n), 0.0)
    spots = np.column_stack([anchors + tir.normal(0, 0.02, (n, 2)), tir.uniform(0.04, 0.12, n), amp])
    return Identity(kind, shape, (rgb, nir, tir_look), spots)


# ------------------------------------------------------------------------------------------ settings


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


def _clutter(rng: np.random.Generator, span: float = 0.5) -> Primitive:
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
    clutter = tuple(_clutter(rng, PANORAMA) for _ in range(rng.integers(8, 16)))
    tint = rng.uniform(0.8, 1.2, 3)
    return Setting(
        horizon=rng.uniform(0.25, 0.75),
        clutter=clutter,
        looks=_scene_looks(rng, len(clutter) + 2),
        light=1.0 if rng.random() < 0.75 else rng.uniform(0.25, 0.5),
        tint=tint / tint.mean(),
        yaw=rng.uniform(0.0, 0.35 if kind == "person" else 1.0),
        facing=int(rng.choice([-1, 1])),
    )


# ------------------------------------------------------------------------------------------ rendering


@dataclass(frozen=True)
class Triplet:
    """What one shot of the three cameras gives; ``parts`` is kept for tests and inspection."""

    images: tuple[Array, Array, Array]  # RGB, NIR, TIR: HxWx3 uint8, pixel-aligned
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
    extra = [_clutter(rng) for _ in range(rng.integers(0, 3))]
    occluders = [_clutter(rng)] if rng.random() < 0.3 else []
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
    near = _scene_looks(rng, len(extra) + len(occluders))
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
    identity: Identity, setting: Setting, key: Sequence[int], size: tuple[int, int] | None = None
) -> Triplet:
    """Render one RGB/NIR/TIR triplet of ``identity`` seen by ``setting``; ``key`` seeds everything else.

    ``size`` is (H, W); by default a random native crop size of the identity's kind. Geometry is shared by
    the three images; light, white balance, gain, noise and the thermal camera's extra blur are not.
    ``Triplet.parts`` is the object's part map minus occluded pixels.
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
        _finish(_to_u8(rgb), blur, low_res),
        np.repeat(_finish(_to_u8(nir), blur, low_res)[..., None], 3, -1),
        IRON[_finish(_to_u8((heat - lo) / (hi - lo)), tir_blur, low_res)],  # optics blur heat, not colours
    )
    return Triplet(images, c.parts)
