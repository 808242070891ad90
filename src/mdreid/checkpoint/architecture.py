"""What a checkpoint fixes about the network, and the one check that a command line does not contradict it:
the checkpoint defines the model, so ``model.backbone.vision.heads=4`` on a 2-head checkpoint is an error
naming both values, never an evaluation of another network."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mdreid.config.sections import leaves
from mdreid.process.errors import MDReIDError

# the hyper-parameters that fix the network a checkpoint's weights belong to (besides the head sizes)
ARCHITECTURE = ("backbone", "mdl", "sie_coe")
# backbone keys about where the starting weights come from, not what the network is
_NOT_ARCHITECTURE = ("backbone.weights", "backbone.allow_random_init")


@dataclass(frozen=True)
class Architecture:
    """The tower (its ``weights`` file dropped: the checkpoint holds every weight), the tokens, the camera
    embedding's scale and the input size (H, W) of a checkpoint; a value it does not record is None."""

    backbone: Mapping[str, Any]
    image_size: tuple[int, ...]
    mdl: Mapping[str, Any] | None = None
    sie_coe: float | None = None

    def model_values(self) -> dict[str, Any]:
        """The ``model`` keys it sets, as plain values."""
        values = {"backbone": dict(self.backbone), "mdl": self.mdl, "sie_coe": self.sie_coe}
        return {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in values.items() if v is not None}

    def values(self) -> dict[str, Any]:
        """``model_values`` and ``image_size`` (a list, as configs write it)."""
        return {**self.model_values(), "image_size": list(self.image_size)}


def check_contradictions(
    given: Mapping[str, Any], defined: Mapping[str, Any], source: str | Path, training: bool
) -> None:
    """Refuse command-line model values (``given``: flat keys under ``model``, and ``image_size``) that the
    checkpoint's ``defined`` values contradict, naming both. Only architecture keys are compared, and with
    ``training`` (evaluation: the loss and optimiser are the checkpoint's too) every key."""
    flat = leaves(defined, "")
    wrong = []
    for key, value in sorted(given.items()):
        section = key.split(".")[0]
        if key in _NOT_ARCHITECTURE or not (training or section in (*ARCHITECTURE, "image_size")):
            continue
        name = "data.image_size" if key == "image_size" else f"model.{key}"
        if key not in flat:
            wrong.append(f"{name}={value!r} (the checkpoint does not record it)")
        elif value != flat[key]:
            wrong.append(f"{name}={value!r} (the checkpoint has {flat[key]!r})")
    if wrong:
        raise MDReIDError(
            f"the command line contradicts the checkpoint {source}: {'; '.join(wrong)}; the checkpoint defines "
            "the model: drop these overrides"
        )
