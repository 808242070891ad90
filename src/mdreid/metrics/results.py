"""The result of an any-to-any evaluation: one row per pair, CMC curves and the paper's named groups.

Everything is in percent, as papers report it. ``scalars()`` is what a LightningModule logs;
``to_json()`` / ``to_csv()`` are what the evaluation CLI writes next to the checkpoint.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

from torch import Tensor

from mdreid.metrics.groups import pair_name

# num_query / num_gallery: the items with every modality of the pair's side; num_valid: the queries scored
# (those with a same-identity gallery item outside the junk; the official protocol drops the others)
ROW_FIELDS: tuple[str, ...] = (
    "query",
    "gallery",
    "mAP",
    "R1",
    "R5",
    "R10",
    "mINP",
    "num_valid",
    "num_query",
    "num_gallery",
)
ROW_METRICS: tuple[str, ...] = ("mAP", "R1", "R5", "R10", "mINP")
SCORE_PAIR: tuple[str, str] = ("RNT", "RNT")


@dataclass
class AnyToAnyResult:
    """Per-pair numbers (percent) of one evaluation and the settings that produced them."""

    rows: list[dict]  # ROW_FIELDS, in the configured pair order
    cmc: dict[str, Tensor]  # "Q->G" -> [max_rank] CMC curve in percent (CPU, float64)
    groups: dict[str, float]  # groups.named_groups(rows)
    similarity: str  # pair_similarity.SIMILARITY_MODES
    junk: str  # "camera" or "scene"
    rerank: dict | None = None  # k-reciprocal re-ranking's k1, k2, lambda_value; None: not re-ranked

    def row(self, query: str, gallery: str) -> dict:
        """The row of one pair; KeyError if it was not evaluated."""
        for r in self.rows:
            if (r["query"], r["gallery"]) == (query, gallery):
                return r
        raise KeyError(pair_name(query, gallery))

    @property
    def score(self) -> float:
        """Model-selection score (mAP + R1) / 2 of RNT->RNT, as fast-reid's ``metric``.

        Without RNT->RNT among the pairs, the mean of (mAP + R1) / 2 over all evaluated pairs.
        """
        rows = [r for r in self.rows if (r["query"], r["gallery"]) == SCORE_PAIR] or self.rows
        return sum((r["mAP"] + r["R1"]) / 2 for r in rows) / len(rows)

    @property
    def score_basis(self) -> str:
        """What ``score`` averages, in words: ``RNT->RNT``, or the pairs scored when it is not among them."""
        if any((r["query"], r["gallery"]) == SCORE_PAIR for r in self.rows):
            return f"of {pair_name(*SCORE_PAIR)}"
        return f"averaged over the {len(self.rows)} scored pairs ({pair_name(*SCORE_PAIR)} not scored)"

    def scalars(self, prefix: str = "val") -> dict[str, float]:
        """Flat dict for ``log_dict``: ``"<prefix>/RT->NT/mAP"`` ..., the groups, and ``"<prefix>/score"``."""
        out = {
            f"{prefix}/{pair_name(r['query'], r['gallery'])}/{m}": float(r[m])
            for r in self.rows
            for m in ROW_METRICS
        }
        out.update({f"{prefix}/{name}": value for name, value in self.groups.items()})
        out[f"{prefix}/score"] = self.score
        return out

    def to_dict(self) -> dict:
        """JSON-ready form: settings, rows, groups and the CMC curves as lists."""
        return {
            "similarity": self.similarity,
            "junk": self.junk,
            "rerank": self.rerank,
            "rows": self.rows,
            "groups": self.groups,
            "cmc": {name: curve.tolist() for name, curve in self.cmc.items()},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_csv(self) -> str:
        """One line per pair with the ``ROW_FIELDS`` columns."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=ROW_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        return buf.getvalue()
