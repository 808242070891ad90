"""Random modality dropping for training (an option; the official recipe has none, i.e. p = 0).

Each modality of a triplet is dropped independently with probability ``p``, conditioned on at least one
modality staying present: the presence pattern is drawn from the 7 non-empty patterns with weights
``p^dropped * (1-p)^kept``. The marginal per-modality drop rate is therefore not p but

    P(drop) = (p - p^3) / (1 - p^3) = p (1 + p) / (1 + p + p^2)      (0.43 for p = 0.5; -> 2/3 as p -> 1)

The pattern is a pure function of ``(seed, epoch, key)``: the key is the draw's position in the global
stream (mode "sample") or its global batch number (mode "batch": every triplet of an optimizer step, on
every rank, loses the same modalities). Worker RNG state never enters, so results do not depend on
``num_workers`` or on the number of devices.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import product
from typing import Any

import numpy as np

from mdreid.config.sections import plain, typed_section
from mdreid.modalities import NUM_MODALITIES
from mdreid.process.errors import MDReIDError

MODES = ("sample", "batch")
_STREAM = 0x5EED_0002  # separates the dropout stream from the sampler's and the augmentation's
ALL_PRESENT: tuple[bool, ...] = (True,) * NUM_MODALITIES
# presence patterns (R, N, T) with at least one modality kept
_PATTERNS: tuple[tuple[bool, ...], ...] = tuple(
    pattern for pattern in product((True, False), repeat=NUM_MODALITIES) if any(pattern)
)


def marginal_drop_rate(p: float) -> float:
    """The probability that one given modality is dropped, after conditioning on keeping at least one."""
    return (p - p**3) / (1 - p**3)


@dataclass(frozen=True)
class ModalityDropout:
    """Seeded per-triplet (or per-batch) presence masks; ``p = 0`` keeps everything."""

    p: float = 0.0
    mode: str = "sample"
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.p < 1.0:
            raise MDReIDError(f"data.modality_dropout.p={self.p}: use a probability in [0, 1)")
        if self.mode not in MODES:
            raise MDReIDError(f"data.modality_dropout.mode={self.mode!r} must be one of {', '.join(MODES)}")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None, seed: int) -> ModalityDropout:
        """Build from the ``data.modality_dropout`` section (``{p, mode}``) or None (off); ``seed`` is the run's."""
        return typed_section(cls, plain(cfg), "data.modality_dropout", fixed={"seed": seed})

    def presence(
        self, epoch: int, position: int, batch: int, available: tuple[bool, ...] = ALL_PRESENT
    ) -> tuple[bool, ...]:
        """The (R, N, T) presence of the draw at ``position`` of global batch ``batch`` in ``epoch``.

        ``available``: the modalities the sample has (a manifest's unpaired rows); only those can be kept,
        at least one always is, and each is dropped with the same weights as in a complete triplet.
        """
        if self.p == 0.0 or sum(available) == 1:
            return tuple(available)
        patterns = [q for q in _PATTERNS if not any(k and not a for k, a in zip(q, available, strict=True))]
        has = sum(available)
        weights = np.array([self.p ** (has - sum(q)) * (1 - self.p) ** sum(q) for q in patterns])
        key = batch if self.mode == "batch" else position
        rng = np.random.default_rng([self.seed, _STREAM, epoch, key])
        return patterns[rng.choice(len(patterns), p=weights / weights.sum())]
