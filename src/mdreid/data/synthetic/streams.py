"""Random streams of the synthetic generator: every random draw comes from a Generator keyed by an integer
tuple, so an image depends only on its key, never on generation order, worker or process.

Key layout: ``(seed, source, role, ...)``. ``source`` names who asks (a benchmark copy, or the pretraining
pool); ``role`` separates an identity's draws from a camera's, a layout plan's and an image's. An identity
then splits its key further into a shape stream and one appearance stream per modality.
"""

from __future__ import annotations

import numpy as np

# sources: one per benchmark layout, one for the proxy-foundation pretraining pool, one for synthetic videos
SOURCES: dict[str, int] = {
    "rgbnt201": 201,
    "rgbnt100": 100,
    "msvr310": 310,
    "wmveid863": 863,
    "pool": 7,
    "video": 8,
}
# roles inside a source's keys
IDENTITY, SETTING, PLAN, IMAGE = range(4)
# streams of one identity: its shape, one appearance stream per modality, and the cross-modal coupling
SHAPE, RGB, NIR, TIR, COUPLING = range(5)


def keyed_rng(*key: int) -> np.random.Generator:
    """A Generator that depends only on ``key`` (non-negative ints), never on call order or process."""
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))
