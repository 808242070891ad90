"""Geometric primitives of the renderer. Each tests membership on broadcastable coordinate arrays and reports
its bounding box, so the same code draws object parts (object units) and background clutter (image units)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

Array = np.ndarray


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
