"""The three modalities and the seven non-empty modality subsets, in canonical order.

Every module names modalities through this file so that the order R, N, T is fixed once:
batches use the keys ``RGB``, ``NI``, ``TI``; subsets are written with the letters ``R``, ``N``, ``T``.
"""

from __future__ import annotations

from itertools import combinations

MODALITIES: tuple[str, ...] = ("RGB", "NI", "TI")
LETTERS: tuple[str, ...] = ("R", "N", "T")
NUM_MODALITIES = len(MODALITIES)

# Canonical subset order: singles, then pairs, then the full set: R, N, T, RN, RT, NT, RNT.
SUBSETS: tuple[str, ...] = tuple(
    "".join(LETTERS[i] for i in combo)
    for size in range(1, NUM_MODALITIES + 1)
    for combo in combinations(range(NUM_MODALITIES), size)
)


def subset_indices(name: str) -> tuple[int, ...]:
    """Modality indices (0=R, 1=N, 2=T) of a subset name such as ``"RT"``; raises on bad names."""
    key = name.upper()
    if key not in SUBSETS:
        raise ValueError(f"unknown modality subset {name!r}: use one of {', '.join(SUBSETS)}")
    return tuple(LETTERS.index(c) for c in key)


def all_pairs() -> list[tuple[str, str]]:
    """All 7x7 = 49 (query subset, gallery subset) pairs, query-major in canonical order."""
    return [(q, g) for q in SUBSETS for g in SUBSETS]
