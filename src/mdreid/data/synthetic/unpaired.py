"""A synthetic copy of unpaired data: a manifest over a synthetic RGBNT201 copy in which each sample keeps one
to three of its modalities, as a site with RGB by day, NIR by night and a thermal gate camera would give.

A third of the samples keep all three, a third two and a third one (which ones is drawn per sample from a
seeded stream), in training and test alike, so every one of the 49 query/gallery subset pairs has queries
and gallery items to score.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mdreid.data.readers import load_benchmark
from mdreid.data.readers.manifest import MODALITY_COLUMNS, manifest_rows, write_rows
from mdreid.data.synthetic.generate import DEFAULT_COUPLING, generate

_STREAM = 0x5EED_0007  # separates the kept-modality draws from every other synthetic stream
LIKE = "rgbnt201"  # the layout the images are written in


def keep_pattern(rng: np.random.Generator) -> tuple[bool, bool, bool]:
    """1, 2 or 3 modalities with equal probability, then which ones uniformly."""
    count = int(rng.integers(1, 4))
    kept = set(rng.choice(3, size=count, replace=False).tolist())
    return tuple(m in kept for m in range(3))  # type: ignore[return-value]


def generate_unpaired(
    manifest: str | Path,
    ids: int | None = None,
    seed: int = 0,
    preset: str = "tiny",
    coupling: float = DEFAULT_COUPLING,
) -> Path:
    """Write the images (``RGBNT201/`` next to the manifest, unless already there) and the manifest."""
    manifest = Path(manifest).expanduser().absolute()
    folder = manifest.parent
    if not (folder / "RGBNT201").exists():
        generate(LIKE, folder, ids=ids, seed=seed, preset=preset, coupling=coupling)
    rows = manifest_rows(load_benchmark(LIKE, folder), folder)
    rng = np.random.default_rng([seed, _STREAM])
    for row in rows:
        for column, keep in zip(MODALITY_COLUMNS, keep_pattern(rng), strict=True):
            if not keep:
                row[column] = ""
    return write_rows(rows, manifest)
