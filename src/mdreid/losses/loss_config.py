"""The ``model.loss`` section: the weights of the MDReID objective, defaults the official hidden values."""

from __future__ import annotations

from dataclasses import dataclass

from mdreid.runtime.errors import MDReIDError

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

    def __post_init__(self) -> None:
        if self.rol_order not in ROL_ORDERS:
            allowed = ", ".join(f"{k} ({v})" for k, v in ROL_ORDERS.items())
            raise MDReIDError(f"model.loss.rol_order={self.rol_order!r}: use one of {allowed}")
