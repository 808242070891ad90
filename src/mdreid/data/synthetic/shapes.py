"""Object shapes, the cue the three modalities share: person proportions, clothing cut, hair, hat and bag;
vehicle type, proportions, cabin, wheels and accessories. A shape is sampled once per identity; its drawing
(pose: arm swing, foot placement) changes per image.

Person units: height 1 (head top v=0, soles v=1), u centred, facing +u. Vehicle units: length 1 (rear
u=-0.5, front u=+0.5), roof v=0, v grows towards the ground.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mdreid.data.synthetic.primitives import Array, Box, Capsule, Drawing, Ellipse, Polygon

KINDS: tuple[str, ...] = ("person", "vehicle")
PERSON_PARTS: tuple[str, ...] = ("skin", "hair", "upper", "lower", "shoes", "bag", "hat")
VEHICLE_PARTS: tuple[str, ...] = ("body", "window", "tyre", "rim", "light", "trim", "extra")


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
SHAPES: dict[str, type[PersonShape] | type[VehicleShape]] = {"person": PersonShape, "vehicle": VehicleShape}
