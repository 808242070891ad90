"""The pretraining pool of the proxy-foundation backbone: many synthetic identities, RGB images only.

It rebuilds, at small scale, the situation of a CLIP backbone: pretrained on RGB photographs of things that
are not the benchmark's identities, then fine-tuned on aligned RGB/NIR/TIR triplets. So the pool

- draws its identities, cameras and images under its own random source (``SOURCES["pool"]``), which no
  benchmark copy uses: no preset's train or test identity can appear in it, whatever the seeds;
- renders RGB only (never a NIR or TIR image), persons and vehicles alike, in square crops as a
  photograph would frame them, each identity seen by several of the pool's own cameras;
- optionally (``palettes``) lets many identities wear the same colours, as a winter campus full of dark
  coats does, so that colour alone cannot tell them apart: each identity keeps its own shape and texture
  geometry but takes its RGB colours from one of ``palettes`` shared palettes of its kind.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from mdreid.data.synthetic.appearance import Identity, make_identity
from mdreid.data.synthetic.cameras import make_setting
from mdreid.data.synthetic.rendering import render_triplet
from mdreid.data.synthetic.shapes import KINDS
from mdreid.data.synthetic.streams import IDENTITY, IMAGE, PLAN, SETTING, SOURCES
from mdreid.files.atomic_io import atomic_write
from mdreid.process.errors import MDReIDError

POOL = SOURCES["pool"]
PALETTE = max(IDENTITY, SETTING, PLAN, IMAGE) + 1  # the role of a shared colour palette in the pool's keys


@dataclass(frozen=True)
class PoolSpec:
    """What a pool is made of; the cache file is named after its hash, so a changed spec renders anew."""

    ids: int = 3000  # identities, alternating person / vehicle
    per_id: int = 12  # RGB images per identity
    size: int = 64  # square crop side in pixels
    cameras: int = 48  # cameras per kind, each with its own background, light and viewpoint
    seed: int = 0
    palettes: int = 0  # shared RGB palettes per kind; 0 = every identity its own colours

    def __post_init__(self) -> None:
        for key in ("ids", "per_id", "size", "cameras"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < (2 if key == "ids" else 1):
                raise MDReIDError(f"pool.{key}={value!r}: use a positive integer (ids >= 2)")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise MDReIDError(f"pool.seed={self.seed!r}: use a non-negative integer")
        if isinstance(self.palettes, bool) or not isinstance(self.palettes, int) or self.palettes < 0:
            raise MDReIDError(f"pool.palettes={self.palettes!r}: use a non-negative integer (0 = off)")

    def digest(self) -> str:
        fields = asdict(self)
        if not self.palettes:  # pools rendered before the knob existed keep their cache name
            del fields["palettes"]
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def identity_key(spec: PoolSpec, pid: int) -> tuple[int, ...]:
    """The random key of pool identity ``pid``: under the pool's source, never a benchmark's."""
    return (spec.seed, POOL, IDENTITY, pid)


def kind_of(pid: int) -> str:
    return KINDS[pid % len(KINDS)]


def palette_key(spec: PoolSpec, pid: int) -> tuple[int, ...]:
    """The random key of the shared palette pool identity ``pid`` wears (``spec.palettes`` > 0)."""
    return (spec.seed, POOL, PALETTE, pid % len(KINDS), pid // len(KINDS) % spec.palettes)


def pool_identity(spec: PoolSpec, pid: int) -> Identity:
    """Pool identity ``pid``: its own shape, textures and looks, with a shared palette's RGB colours if any."""
    kind = kind_of(pid)
    identity = make_identity(kind, identity_key(spec, pid))
    if not spec.palettes:
        return identity
    colours = make_identity(kind, palette_key(spec, pid)).looks[0]
    rgb = replace(identity.looks[0], base=colours.base, alt=colours.alt)
    return replace(identity, looks=(rgb, *identity.looks[1:]))


def _render_identity(args: tuple[PoolSpec, int]) -> np.ndarray:
    """The ``per_id`` RGB crops of one identity, (per_id, size, size, 3) uint8."""
    spec, pid = args
    kind = kind_of(pid)
    identity = pool_identity(spec, pid)
    cams = np.random.default_rng([spec.seed, POOL, pid]).choice(
        spec.cameras, min(4, spec.cameras), replace=False
    )
    out = np.empty((spec.per_id, spec.size, spec.size, 3), np.uint8)
    for k in range(spec.per_id):
        cam = int(cams[k % len(cams)]) + (0 if kind == KINDS[0] else spec.cameras)
        setting = make_setting(kind, (spec.seed, POOL, SETTING, cam))
        key = (spec.seed, POOL, IMAGE, pid, k)
        out[k] = render_triplet(identity, setting, key, size=(spec.size, spec.size), rgb_only=True).images[0]
    return out


def render_pool(spec: PoolSpec, processes: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """All pool images (N, size, size, 3) uint8 and their identity labels (N,), in identity order.

    Each identity depends only on its key, so the result is the same for any number of processes.
    """
    jobs = [(spec, pid) for pid in range(spec.ids)]
    if processes > 1:
        with get_context("spawn").Pool(processes) as workers:
            chunks = workers.map(_render_identity, jobs, chunksize=16)
    else:
        chunks = [_render_identity(job) for job in jobs]
    labels = np.repeat(np.arange(spec.ids, dtype=np.int64), spec.per_id)
    return np.concatenate(chunks), labels


def load_or_render(
    spec: PoolSpec, cache_dir: str | Path, processes: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """The pool from ``cache_dir``, rendered and written there atomically on first use."""
    path = Path(cache_dir) / f"pool-{spec.digest()}.npz"
    if path.is_file():
        with np.load(path) as data:
            return data["images"], data["labels"]
    images, labels = render_pool(spec, processes)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: np.savez(f, images=images, labels=labels, spec=json.dumps(asdict(spec))))
    return images, labels
