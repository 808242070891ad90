"""The paper's named groups of any-to-any scenarios, and their summary numbers.

Pairs are written ``"Q->G"`` with canonical subset names (``modalities.SUBSETS``). The groups follow
docs/method.md §5.4: the matched full setting (Table 1), the six matched missing-modality settings
(Table 2) and the four reported mismatched settings (Table 3), plus the mean over all 42 mismatched
pairs that only this project evaluates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mdreid.modalities import all_pairs

MATCHED: tuple[tuple[str, str], ...] = (("RNT", "RNT"),)
MISSING: tuple[tuple[str, str], ...] = (
    ("NT", "NT"),
    ("RT", "RT"),
    ("RN", "RN"),
    ("T", "T"),
    ("N", "N"),
    ("R", "R"),
)
MISMATCHED: tuple[tuple[str, str], ...] = (("RT", "NT"), ("RT", "N"), ("R", "N"), ("R", "NT"))
PAPER_PAIRS: tuple[tuple[str, str], ...] = MATCHED + MISSING + MISMATCHED
OFF_DIAGONAL: tuple[tuple[str, str], ...] = tuple((q, g) for q, g in all_pairs() if q != g)
GROUP_METRICS: tuple[str, ...] = ("mAP", "R1")


def pair_name(query: str, gallery: str) -> str:
    """``"RT->NT"``: the key of a pair in rows, scalars and files."""
    return f"{query}->{gallery}"


def named_groups(rows: Sequence[Mapping]) -> dict[str, float]:
    """mAP and R1 of the named groups, from result rows (``{"query", "gallery", "mAP", "R1", ...}``).

    Keys are ``"<group>/<pair>/<metric>"`` for each named pair that was evaluated, e.g.
    ``"mismatched/RT->NT/mAP"``, and ``"<group>/<avg>/<metric>"`` for the averages: ``missing/avg``
    (the six missing settings), ``mismatched/avg4`` (the four reported ones) and ``mismatched/avg42``
    (all 42 query != gallery pairs). An average appears only when every pair it covers was evaluated,
    so a partial run never reports a number under a name that means something else.
    """
    by_pair = {(r["query"], r["gallery"]): r for r in rows}
    out: dict[str, float] = {}
    for group, pairs in (("matched", MATCHED), ("missing", MISSING), ("mismatched", MISMATCHED)):
        for q, g in pairs:
            if (q, g) in by_pair:
                for metric in GROUP_METRICS:
                    out[f"{group}/{pair_name(q, g)}/{metric}"] = float(by_pair[(q, g)][metric])
    for name, pairs in (
        ("missing/avg", MISSING),
        ("mismatched/avg4", MISMATCHED),
        ("mismatched/avg42", OFF_DIAGONAL),
    ):
        if all(p in by_pair for p in pairs):
            for metric in GROUP_METRICS:
                out[f"{name}/{metric}"] = sum(float(by_pair[p][metric]) for p in pairs) / len(pairs)
    return out
