"""The ``model.loss`` section: the weights of the MDReID objective, defaults the official hidden values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mdreid.process.errors import MDReIDError

# the objective's own terms, also the keys it returns
BUILT_IN_TERMS = ("loss", "id", "triplet", "rol", "kdl")
ROL_ORDERS: dict[int, str] = {1: "the paper's Eq. 13", 2: "official second-order similarity"}
# the key of an extra term's entry that names the registered term
TERM = "term"


@dataclass(frozen=True)
class ExtraTerm:
    """One entry of ``model.loss.extra_terms``: the registered term's name, its weight and its keywords."""

    term: str
    weight: float
    kwargs: Mapping[str, Any]


@dataclass(frozen=True)
class LossConfig:
    id_weight: float = 0.25
    label_smoothing: float = 0.1
    triplet_weight: float = 1.0
    shared_weight: float = 3.0  # the official x3 on the shared branch (s_loc=6)
    rol_weight: float = 1.5
    rol_order: int = 2
    kdl_weight: float = 5.25
    # your own terms: label -> {term: a registered loss term's name, weight: float, ...its keyword
    # arguments} (docs/extending.md); read when training, never when a checkpoint is only evaluated
    extra_terms: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.rol_order not in ROL_ORDERS:
            allowed = ", ".join(f"{k} ({v})" for k, v in ROL_ORDERS.items())
            raise MDReIDError(f"model.loss.rol_order={self.rol_order!r}: use one of {allowed}")

    def extra(self) -> dict[str, ExtraTerm]:
        """The entries of ``extra_terms`` by label; the weight defaults to 1."""
        out: dict[str, ExtraTerm] = {}
        for label, spec in self.extra_terms.items():
            if (
                label in BUILT_IN_TERMS
                or not isinstance(spec, Mapping)
                or not isinstance(spec.get(TERM), str)
            ):
                raise MDReIDError(
                    f"model.loss.extra_terms.{label}: give {{{TERM}: <a registered loss term>, weight: ...}} under "
                    f"a label other than {', '.join(BUILT_IN_TERMS)}"
                )
            kwargs = {k: v for k, v in spec.items() if k not in (TERM, "weight")}
            weight = spec.get("weight", 1.0)
            if not isinstance(weight, (int, float)) or isinstance(weight, bool):
                raise MDReIDError(f"model.loss.extra_terms.{label}.weight={weight!r}: expected a number")
            out[label] = ExtraTerm(spec[TERM], float(weight), kwargs)
        return out
