"""The ``data.synth`` section: the recipe of the synthetic copy a run generates when its data is absent."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from mdreid.config.sections import plain, typed_section
from mdreid.data.readers import SOURCES
from mdreid.data.readers.common import check_choice
from mdreid.data.synthetic.generate import DEFAULT_COUPLING, PRESETS, check_coupling
from mdreid.process.errors import MDReIDError


@dataclass(frozen=True)
class SynthConfig:
    """What the generator is asked for; the recipe stored with a copy, so another one is never reused."""

    like: str | None = None  # benchmark layout to copy; None = data.dataset's (``unpaired`` for a manifest)
    preset: str = "tiny"  # size preset of the generator
    ids: int | None = None  # identities; None = the preset's
    seed: int = 0  # seed of the generated pixels
    coupling: float = DEFAULT_COUPLING  # share of materials whose NIR/TIR look follows RGB

    def __post_init__(self) -> None:
        check_choice("data.synth.preset", self.preset, tuple(PRESETS))
        check_coupling(self.coupling)  # ids are checked by the generator, against the layout's limits


def synth_config(synth: Mapping[str, Any] | None, dataset: str) -> SynthConfig | None:
    """The ``data.synth`` section of a run on ``dataset`` (None = no synthetic copy); a null value takes the
    default, and ``like`` must name ``dataset``'s layout."""
    if synth is None:
        return None
    values = plain(synth)
    if isinstance(values, Mapping):
        values = {key: value for key, value in values.items() if value is not None}
    parsed = typed_section(SynthConfig, values, "data.synth")
    if dataset not in SOURCES:
        raise MDReIDError(
            f"data.synth generates a copy of a built-in benchmark, not data for data.dataset={dataset} (a reader "
            "of your own): set data.synth=null, with that reader's data at data.root"
        )
    expected = "unpaired" if dataset == "manifest" else dataset
    like = (parsed.like or expected).lower()
    if like != expected:
        raise MDReIDError(
            f"data.synth.like={parsed.like} does not fit data.dataset={dataset}: use data.synth.like={expected}"
        )
    return replace(parsed, like=like, coupling=float(parsed.coupling))
