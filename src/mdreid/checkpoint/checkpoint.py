"""The typed checkpoint: one file, read once by ``resolve_checkpoint``, and everything the entry points ask of
it (the network it fixes, its saved hyper-parameters, the image rule it was trained with, its cameras, its
origin) derived from that one reading and computed at most once, so no caller reads or converts it again."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from mdreid.checkpoint.architecture import Architecture
from mdreid.checkpoint.state import find_state_dict
from mdreid.process.errors import MDReIDError

if TYPE_CHECKING:
    from mdreid.data.bit_depth import BitDepthRule
    from mdreid.official.layout import Converted

# where Lightning keeps a module's saved hyper-parameters (``LightningModule.CHECKPOINT_HYPER_PARAMS_KEY``)
HPARAMS_KEY = "hyper_parameters"
# where it keeps the DataModule's
DATA_HPARAMS_KEY = "datamodule_hyper_parameters"


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint file, read once (memory-mapped where the format allows); its derived views are cached."""

    path: Path
    payload: Any  # what torch.load returned
    official: bool  # an official MDReID state dict rather than an mdreid Lightning checkpoint
    epoch: int | None  # training epochs completed when it was written; None if the file does not say
    global_step: int | None

    @property
    def origin(self) -> Literal["mdreid", "official"]:
        """Who wrote it: mdreid (a Lightning checkpoint) or the official MDReID code (a ``.pth``)."""
        return "official" if self.official else "mdreid"

    @property
    def resumable(self) -> bool:
        """Whether Lightning can continue training from it (it holds the optimiser state)."""
        return not self.official and "optimizer_states" in self.payload

    @property
    def state_dict(self) -> Mapping[str, torch.Tensor]:
        """An mdreid checkpoint's tensors under the module's key names (an official file's: ``converted``)."""
        return self.payload["state_dict"]

    @cached_property
    def hparams(self) -> dict[str, Any]:
        """The model hyper-parameters an mdreid checkpoint was written with, in today's key names: a checkpoint
        written before ``model.mdl.enabled`` was renamed ``model.mdl.decoupled`` says ``enabled``."""
        hparams = self.payload.get(HPARAMS_KEY) if isinstance(self.payload, Mapping) else None
        if not isinstance(hparams, dict) or not isinstance(hparams.get("backbone"), dict):
            raise MDReIDError(
                f"ckpt_path={str(self.path)!r} has no model hyper-parameters; use a checkpoint written by "
                "mdreid.train"
            )
        mdl = hparams.get("mdl")
        if isinstance(mdl, dict) and "enabled" in mdl and "decoupled" not in mdl:
            mdl = {("decoupled" if k == "enabled" else k): v for k, v in mdl.items()}
            hparams = {**hparams, "mdl": mdl}
        return hparams

    @cached_property
    def converted(self) -> Converted:
        """An official file's state dict (plain, or under ``model`` / ``state_dict``) renamed to mdreid keys,
        with the layout its shapes imply; converted on first use, once."""
        from mdreid.official.layout import convert_official

        return convert_official(find_state_dict(self.payload) or {}, str(self.path))

    def architecture(self, image_size: Sequence[int] | None = None) -> Architecture:
        """What the checkpoint fixes about the model: tower, tokens, camera-embedding scale, input size.

        An mdreid checkpoint says so in its saved hyper-parameters; an official ``.pth`` in its tensors'
        shapes, with ``image_size`` settling an input size the benchmark it was trained on does not identify.
        """
        if self.official:
            from mdreid.official.layout import resolve_image_size

            layout = self.converted.layout
            return Architecture(
                backbone=layout.backbone(),
                image_size=resolve_image_size(layout, image_size, str(self.path)),
                mdl={"decoupled": True, "tie_tokens": layout.tie_tokens},
            )
        hparams = self.hparams
        return Architecture(
            backbone={**hparams["backbone"], "weights": None},  # every weight comes from the checkpoint
            image_size=tuple(int(v) for v in hparams["image_size"]),
            mdl=hparams.get("mdl"),
            sie_coe=hparams.get("sie_coe"),
        )

    def defined(self, image_size: Sequence[int] | None = None) -> dict[str, Any]:
        """Every model value the checkpoint records (``image_size`` included), by its key under ``model``: what
        an evaluation's command line must not contradict."""
        arch = self.architecture(image_size).values()
        return arch if self.official else {**self.hparams, **arch}

    @property
    def cameras(self) -> int:
        """How many cameras its camera embedding has a row for."""
        return self.converted.layout.num_cameras if self.official else int(self.hparams["num_cameras"])

    @cached_property
    def image_rule(self) -> BitDepthRule | None:
        """The high-bit-depth rule it was trained with (its DataModule's saved ``high_bit_depth``); None when it
        records none (an official ``.pth``, or a checkpoint written without a DataModule)."""
        from mdreid.data.bit_depth import BitDepthRule

        saved = self.payload.get(DATA_HPARAMS_KEY) if not self.official else None
        if not isinstance(saved, Mapping) or "high_bit_depth" not in saved:
            return None
        return BitDepthRule.from_config(saved["high_bit_depth"])
