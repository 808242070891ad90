"""``PairSelection``: which (query subset -> gallery subset) pairs the any-to-any metric scores.

``eval.pairs`` is parsed into it once, where it enters (the eval config section, or the metric's own
arguments for Python users), and travels as this type down to the metric. Its plain form (``"all"``,
``"paper"`` or a list of ``"Q->G"`` names) is what hyper-parameters and checkpoints store.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from mdreid.metrics.groups import PAPER_PAIRS, pair_name
from mdreid.modalities import LETTERS, SUBSETS, all_pairs
from mdreid.process.errors import MDReIDError

PAIR_PRESETS: tuple[str, ...] = ("all", "paper")
_PAIRS_HELP = (
    f"use 'all', 'paper', or a list of 'Q->G' strings / (Q, G) tuples with Q, G in {', '.join(SUBSETS)}"
)


def _canonical_subset(name: object) -> str:
    """``"tr"`` -> ``"RT"``: letters in canonical R, N, T order; raises on anything else."""
    letters = str(name).strip().upper()
    if not letters or set(letters) - set(LETTERS) or len(set(letters)) != len(letters):
        raise MDReIDError(f"eval.pairs: bad modality subset {name!r}: {_PAIRS_HELP}")
    return "".join(c for c in LETTERS if c in letters)


def _explicit(items: Sequence) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for item in items:
        parts = item.split("->") if isinstance(item, str) else item
        if not isinstance(parts, Sequence) or len(parts) != 2:
            raise MDReIDError(f"eval.pairs: bad pair {item!r}: {_PAIRS_HELP}")
        pair = (_canonical_subset(parts[0]), _canonical_subset(parts[1]))
        if pair not in out:
            out.append(pair)
    if not out:
        raise MDReIDError(f"eval.pairs: the list is empty: {_PAIRS_HELP}")
    return tuple(out)


@dataclass(frozen=True)
class PairSelection:
    """Canonical (query subset, gallery subset) pairs without repeats, and the preset that named them, if any.

    ``"all"``: the 49 pairs; ``"paper"``: RNT->RNT, the six missing-modality settings and the four reported
    mismatched ones (``groups.PAPER_PAIRS``); or an explicit list such as ``["RT->NT", ("R", "N")]``.
    """

    pairs: tuple[tuple[str, str], ...]
    preset: str | None = None

    @classmethod
    def parse(cls, value: PairSelection | str | Sequence) -> PairSelection:
        """The selection ``value`` names; an unknown preset, subset or pair is an error naming the allowed form."""
        if isinstance(value, PairSelection):
            return value
        if isinstance(value, str):
            if value not in PAIR_PRESETS:
                raise MDReIDError(f"eval.pairs: unknown preset {value!r}: {_PAIRS_HELP}")
            return cls(tuple(all_pairs() if value == "all" else PAPER_PAIRS), value)
        if not isinstance(value, Sequence):
            raise MDReIDError(f"eval.pairs={value!r}: {_PAIRS_HELP}")
        return cls(_explicit(value))

    def plain(self) -> str | list[str]:
        """The preset name, or the ``"Q->G"`` names: what a checkpoint stores; ``parse`` reads it back."""
        return self.preset if self.preset is not None else [pair_name(q, g) for q, g in self.pairs]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)
