"""A synthetic multi-spectral video: identities of the synthetic generator walking across a scene, seen by
aligned RGB, NIR and TIR cameras, with MOTChallenge ground truth and detections.

Identities enter in turn from alternate sides on nearby lanes, so their paths cross. Each is drawn from a
few renders of the generator (poses and light vary between them), pasted at its box. In the ``night``
stretch the RGB camera records nothing: its video has a gap there (align the videos by timestamp), and
``frames()`` gives None for it. Everything is drawn from keyed streams of ``seed``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from mdreid.data.synthetic.appearance import make_identity
from mdreid.data.synthetic.cameras import make_setting
from mdreid.data.synthetic.generate import DEFAULT_COUPLING
from mdreid.data.synthetic.rendering import render_triplet
from mdreid.data.synthetic.streams import IDENTITY, IMAGE, PLAN, SETTING, SOURCES, keyed_rng
from mdreid.process.errors import MDReIDError

SOURCE = SOURCES["video"]
FILES = ("rgb.mkv", "nir.mkv", "tir.mkv")


@dataclass(frozen=True)
class VideoSpec:
    ids: int = 4
    frames: int = 60
    size: tuple[int, int] = (96, 192)  # frame H, W
    sprite: tuple[int, int] = (64, 32)  # a person's box H, W
    fps: int = 10
    night: tuple[int, int] | None = None  # first and last frame (1-based) without RGB
    renders: int = 3  # renders per identity, cycled along its path
    seed: int = 0


@dataclass(frozen=True)
class Box:
    frame: int  # 1-based
    pid: int  # 1-based
    left: int  # 0-based pixel
    top: int


def boxes(spec: VideoSpec) -> list[Box]:
    """Where each identity is in each frame it is visible, in (frame, pid) order."""
    rng = keyed_rng(spec.seed, SOURCE, PLAN)
    (h, w), (sh, sw) = spec.size, spec.sprite
    span = spec.frames * 0.6  # frames an identity takes to cross
    out = []
    for k in range(spec.ids):
        start = int(k * (spec.frames - span) / max(1, spec.ids - 1))
        lane = (h - sh) / 2 + rng.uniform(-0.15, 0.15) * (h - sh)
        for f in range(start, min(spec.frames, start + int(span))):
            t = (f - start) / span
            x = (w - sw) * (t if k % 2 == 0 else 1 - t)
            out.append(Box(f + 1, k + 1, int(round(x)), int(round(lane + 2 * np.sin(f / 3 + k)))))
    return sorted(out, key=lambda b: (b.frame, b.pid))


def _sprites(spec: VideoSpec) -> list[list[tuple[np.ndarray, ...]]]:
    setting = dataclasses.replace(make_setting("person", (spec.seed, SOURCE, SETTING, 0)), light=1.0)
    sprites = []
    for pid in range(1, spec.ids + 1):
        identity = make_identity("person", (spec.seed, SOURCE, IDENTITY, pid), DEFAULT_COUPLING)
        keys = [(spec.seed, SOURCE, IMAGE, pid, r) for r in range(spec.renders)]
        sprites.append([render_triplet(identity, setting, key, spec.sprite).images for key in keys])
    return sprites


def frames(spec: VideoSpec) -> Iterator[tuple[int, list[np.ndarray | None]]]:
    """``(frame, [RGB, NIR, TIR])`` per frame (1-based): ``(H, W, 3)`` uint8, RGB None at night."""
    if spec.ids < 2 or spec.frames < 4:
        raise MDReIDError(
            f"a synthetic video needs at least 2 identities and 4 frames, got {spec.ids}, {spec.frames}"
        )
    sprites = _sprites(spec)
    rng = keyed_rng(spec.seed, SOURCE, SETTING, 1)
    h, w = spec.size
    grey = np.linspace(60, 140, w)[None, :, None] + rng.normal(0, 6, (h, w, 1))
    backgrounds = [
        np.clip(grey * tint, 0, 255).astype(np.uint8)
        for tint in ([1.0, 0.95, 0.85], [0.8] * 3, [0.3, 0.1, 0.4])
    ]
    by_frame: dict[int, list[Box]] = {}
    for box in boxes(spec):
        by_frame.setdefault(box.frame, []).append(box)
    sh, sw = spec.sprite
    for f in range(1, spec.frames + 1):
        images = [bg.copy() for bg in backgrounds]
        for box in by_frame.get(f, []):
            sprite = sprites[box.pid - 1][(f // 8) % spec.renders]
            for image, patch in zip(images, sprite, strict=True):
                image[box.top : box.top + sh, box.left : box.left + sw] = patch
        night = spec.night is not None and spec.night[0] <= f <= spec.night[1]
        yield f, [None if night and m == 0 else image for m, image in enumerate(images)]


def _covered(box: Box, others: list[Box], sprite: tuple[int, int]) -> float:
    """The share of ``box`` hidden by the boxes pasted after it (higher ids are drawn on top)."""
    sh, sw = sprite
    hidden = 0
    for o in others:
        if o.pid > box.pid:
            dx = max(0, min(box.left + sw, o.left + sw) - max(box.left, o.left))
            dy = max(0, min(box.top + sh, o.top + sh) - max(box.top, o.top))
            hidden = max(hidden, dx * dy)
    return hidden / (sh * sw)


def mot_lines(spec: VideoSpec, detections: bool, miss: float = 0.05) -> list[str]:
    """MOTChallenge lines of the ground truth (ids, consider flag 1) or of detections: id -1, the true box
    jittered by a pixel or two, scores in 0.6..1; a person more than half hidden is not detected, and any
    other is missed with probability ``miss``, as a detector would."""
    rng = keyed_rng(spec.seed, SOURCE, PLAN, 1)
    sh, sw = spec.sprite
    (h, w), lines = spec.size, []
    every = boxes(spec)
    for b in every:
        if detections:
            same = [o for o in every if o.frame == b.frame]
            if rng.random() < miss or _covered(b, same, spec.sprite) > 0.5:
                continue
            x, y = (
                np.clip(b.left + rng.integers(-2, 3), 0, w - sw),
                np.clip(b.top + rng.integers(-2, 3), 0, h - sh),
            )
            lines.append(f"{b.frame},-1,{x + 1},{y + 1},{sw},{sh},{rng.uniform(0.6, 1.0):.3f},-1,-1,-1")
        else:
            lines.append(f"{b.frame},{b.pid},{b.left + 1},{b.top + 1},{sw},{sh},1,1,1")
    return lines


def write_video(spec: VideoSpec, out: str | Path, codec: str = "ffv1") -> dict[str, Path]:
    """``rgb.mkv``, ``nir.mkv``, ``tir.mkv`` (lossless FFV1 by default; RGB without its night frames),
    ``gt.txt`` and ``det.txt`` in ``out``; returns their paths by name."""
    import av

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name.split(".")[0]: out / name for name in FILES}
    containers = [av.open(str(p), "w") for p in paths.values()]
    streams = []
    for container in containers:
        stream = container.add_stream(codec, rate=spec.fps)
        stream.height, stream.width = spec.size
        stream.pix_fmt = "bgr0" if codec == "ffv1" else "yuv420p"
        stream.codec_context.time_base = Fraction(1, spec.fps)
        streams.append(stream)
    try:
        for f, images in frames(spec):
            for container, stream, image in zip(containers, streams, images, strict=True):
                if image is None:
                    continue
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts, frame.time_base = f - 1, stream.codec_context.time_base
                container.mux(stream.encode(frame))
        for container, stream in zip(containers, streams, strict=True):
            container.mux(stream.encode(None))
    finally:
        for container in containers:
            container.close()
    for name, detections in (("gt", False), ("det", True)):
        paths[name] = out / f"{name}.txt"
        paths[name].write_text("\n".join(mot_lines(spec, detections)) + "\n")
    return paths
