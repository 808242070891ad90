"""What ``MDReIDNet`` hands the objective: the features and logits of one training step.

``decoupled`` says which model produced it, so the objective never infers the model from missing fields.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

_DECOUPLED_FIELDS = ("sh", "sh_cat", "logits_sp", "logits_sh")
_BASELINE_FIELDS = ("feat", "logits")


@dataclass(frozen=True)
class NetOutput:
    """Decoupled MDReID: ``sp``, ``sh`` ``[B,3,D]``; ``sh_cat`` ``[B,3D]`` (mean-filled); ``logits_sp``
    ``[B,3,C]`` (zero rows where absent); ``logits_sh`` ``[B,C]``. Single-token baseline: ``sp`` ``[B,3,D]``,
    ``feat`` ``[B,3D]`` (mean-filled), ``logits`` ``[B,C]``. Both: ``present`` ``[B,3]`` bool."""

    decoupled: bool
    sp: Tensor
    present: Tensor
    # the decoupled network's
    sh: Tensor | None = None
    sh_cat: Tensor | None = None
    logits_sp: Tensor | None = None
    logits_sh: Tensor | None = None
    # the single-token baseline's
    feat: Tensor | None = None
    logits: Tensor | None = None

    def __post_init__(self) -> None:
        needed = _DECOUPLED_FIELDS if self.decoupled else _BASELINE_FIELDS
        missing = [name for name in needed if getattr(self, name) is None]
        if missing:
            kind = "decoupled" if self.decoupled else "baseline"
            raise ValueError(f"a {kind} NetOutput needs {', '.join(missing)}")
