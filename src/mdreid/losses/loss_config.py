"""The ``model.loss`` section: the weights of the MDReID objective, defaults the official hidden values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mdreid.process.errors import MDReIDError
from mdreid.runtime.config_keys import locate_target

# the objective's own terms, also the keys it returns
BUILT_IN_TERMS = ("loss", "id", "triplet", "rol", "kdl")
ROL_ORDERS: dict[int, str] = {1: "the paper's Eq. 13", 2: "official second-order similarity"}


@dataclass(frozen=True)
class LossConfig:
    id_weight: float = 0.25
    label_smoothing: float = 0.1
    triplet_weight: float = 1.0
    shared_weight: float = 3.0  # the official x3 on the shared branch (s_loc=6)
    rol_weight: float = 1.5
    rol_order: int = 2
    kdl_weight: float = 5.25
    # your own terms: name -> {_target_: a class whose instances are called term(out, labels) -> scalar (or a
    # function with _partial_: true), weight: float, ...its keyword arguments} (docs/extending.md)
    extra_terms: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.extra()  # a bad extra term stops the run here
        if self.rol_order not in ROL_ORDERS:
            allowed = ", ".join(f"{k} ({v})" for k, v in ROL_ORDERS.items())
            raise MDReIDError(f"model.loss.rol_order={self.rol_order!r}: use one of {allowed}")

    def extra(self) -> dict[str, tuple[float, dict[str, Any]]]:
        """``{name: (weight, what Hydra instantiates)}`` of ``extra_terms``; the weight defaults to 1."""
        out: dict[str, tuple[float, dict[str, Any]]] = {}
        for name, spec in self.extra_terms.items():
            if name in BUILT_IN_TERMS or not isinstance(spec, Mapping) or "_target_" not in spec:
                raise MDReIDError(
                    f"model.loss.extra_terms.{name}: give {{_target_: ..., weight: ...}} under a name other than "
                    f"{', '.join(BUILT_IN_TERMS)}"
                )
            locate_target(spec["_target_"], f"model.loss.extra_terms.{name}")  # importable, before any build
            build = {"weight": 1.0, **spec}
            weight = build.pop("weight")
            if not isinstance(weight, (int, float)) or isinstance(weight, bool):
                raise MDReIDError(f"model.loss.extra_terms.{name}.weight={weight!r}: expected a number")
            out[name] = (float(weight), build)
        return out
