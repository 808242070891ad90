"""``EvalConfig``: the ``eval`` config section, typed and parsed once where a run starts, and the metric it
describes. The metric's configurable arguments are fields here, so one added to ``AnyToAnyReID`` is
``eval.<name>`` everywhere (train, eval, score) without touching the callers.

Besides the metric's arguments the section holds ``save_features``, ``plots`` and ``plots_cam`` (for the
results callback)
and ``unseen_cameras`` (for the camera check before evaluating).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mdreid.config.sections import plain, typed_section
from mdreid.metrics.any_to_any import AnyToAnyReID, check_metric_arguments
from mdreid.metrics.pair_selection import PairSelection
from mdreid.process.errors import MDReIDError

# metric arguments that come from the data, never from the eval section
_FROM_DATA: tuple[str, ...] = ("junk",)
# eval.unseen_cameras: what happens to evaluation images whose camera the model has no embedding for
UNSEEN_CAMERAS: tuple[str, ...] = ("error", "no_embedding")


def metric_keys() -> tuple[str, ...]:
    """The ``AnyToAnyReID`` constructor arguments the eval section sets (all but the data's own)."""
    params = inspect.signature(AnyToAnyReID.__init__).parameters.values()
    return tuple(
        p.name
        for p in params
        if p.name not in ("self", *_FROM_DATA) and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    )


@dataclass(frozen=True)
class EvalConfig:
    """Every ``eval`` key; see conf/eval/default.yaml for what each means."""

    pairs: PairSelection = field(default_factory=lambda: PairSelection.parse("all"))
    similarity: str = "code"
    max_rank: int = 50
    chunk_size: int | None = None
    rerank: bool = False
    rerank_k1: int = 20
    rerank_k2: int = 6
    rerank_lambda: float = 0.3
    save_features: bool = False
    unseen_cameras: str = "error"
    plots: bool = True
    plots_cam: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "pairs", PairSelection.parse(self.pairs)
        )  # Python users may give plain values
        check_metric_arguments(
            self.similarity, self.max_rank, self.rerank, self.rerank_k1, self.rerank_k2, self.rerank_lambda
        )
        if self.unseen_cameras not in UNSEEN_CAMERAS:
            raise MDReIDError(
                f"eval.unseen_cameras={self.unseen_cameras!r}: use one of {', '.join(UNSEEN_CAMERAS)}"
            )

    @classmethod
    def parse(cls, section: EvalConfig | Mapping[str, Any] | None) -> EvalConfig:
        """The ``eval`` section (a config node, its plain form from a checkpoint, or None for the defaults)."""
        return section if isinstance(section, EvalConfig) else typed_section(cls, plain(section), "eval")

    def plain(self) -> dict[str, Any]:
        """Plain data (``pairs`` as its plain form), as hyper-parameters store it; ``parse`` reads it back."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {**values, "pairs": self.pairs.plain()}

    def metric_options(self) -> dict[str, Any]:
        """The keyword arguments of ``AnyToAnyReID`` this section sets."""
        return {k: getattr(self, k) for k in metric_keys()}

    def build_metric(self, junk: str) -> AnyToAnyReID:
        """The any-to-any metric this section describes, with the data's junk rule."""
        return AnyToAnyReID(junk=junk, **self.metric_options())
