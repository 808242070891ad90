"""The ``data`` section, parsed once at an entry point into a ``DataConfig``: every check that needs no file (a
misspelt key, a value of the wrong kind, the PK batch, the reader and its arguments, the nested sections) stops
the run with one line before any data is read or any model is built. The DataModule is built from it and
checks none of it again."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mdreid.config.sections import plain, reject_unknown_keys, typed_section, typed_view
from mdreid.data.bit_depth import BitDepthRule
from mdreid.data.modality_dropout import ModalityDropout
from mdreid.data.pk_sampler import check_pk_batch
from mdreid.data.readers import reader
from mdreid.data.readers.common import POLICIES, check_choice
from mdreid.data.synth_config import SynthConfig, synth_config
from mdreid.data.transforms import check_image_size, check_random_erasing
from mdreid.data.val_split import ValConfig
from mdreid.process.errors import MDReIDError

# what Hydra's ``instantiate(cfg.data)`` calls (conf/data/default.yaml); the entry points build through
# ``mdreid.factory.build_datamodule`` from the parsed section instead
TARGET = "mdreid.data.datamodule.MultiModalReIDDataModule.from_section"
REQUIRED = ("dataset", "root", "image_size")
# sections whose parse depends on another key: the dataset names the synthetic layout, the seed the dropout's
_DEPENDENT = ("modality_dropout", "synth")


@dataclass(frozen=True)
class _Source:
    """The keys the others depend on, read first: what is read (and through which reader), and the seed."""

    dataset: str
    seed: int = 0
    reader_args: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class DataConfig:
    """The checked ``data`` section (conf/data/default.yaml explains each key); build it with ``parse``."""

    dataset: str  # benchmark, ``manifest`` or a registered reader, lower case
    root: str  # folder that contains the benchmark's top folder
    image_size: tuple[int, ...]  # (H, W) every modality image is resized to (two values: checked below)
    batch_size: int = 64  # GLOBAL triplets per optimizer step over all devices
    num_instances: int = 8  # K triplets per identity in a batch
    eval_batch_size: int = 128  # triplets per evaluation batch, per device
    num_workers: int = 4  # DataLoader workers per device
    on_missing: str = "error"  # error | skip a triplet with a missing modality file
    on_bad_name: str = "error"  # error | skip a .jpg that breaks the filename rule
    modality_dropout: ModalityDropout = ModalityDropout()  # off (p = 0) by default; seeded with ``seed``
    sync_augment: bool = False  # same flip, crop and erase box for R, N and T
    random_erasing: float = 0.5  # probability of RandomErasing in training
    seed: int = 0  # seed of the sampler order, augmentation and modality dropout
    synth: SynthConfig | None = None  # the synthetic copy generated when the data is absent; None = none
    manifest: str | None = None  # the CSV / JSON Lines file of dataset=manifest
    high_bit_depth: BitDepthRule = BitDepthRule()  # how 16-bit and float images map to 0..255
    val: ValConfig = ValConfig()  # the validation split
    reader_args: Mapping[str, Any] | None = None  # keywords of a registered reader

    def __post_init__(self) -> None:
        if (self.dataset == "manifest") != bool(self.manifest):
            raise MDReIDError(
                "data.manifest names the CSV / JSON Lines file of data.dataset=manifest, and only of it: "
                f"got data.dataset={self.dataset} with data.manifest={self.manifest}"
            )
        check_image_size(self.image_size)
        check_pk_batch(self.batch_size, self.num_instances)
        _count("data.eval_batch_size", self.eval_batch_size, 1)
        _count("data.num_workers", self.num_workers, 0)
        check_choice("data.on_missing", self.on_missing, POLICIES)
        check_choice("data.on_bad_name", self.on_bad_name, POLICIES)
        check_random_erasing(self.random_erasing)

    @classmethod
    def parse(cls, section: Any) -> DataConfig:
        """The ``data`` section (a config node or a plain mapping, e.g. a checkpoint's saved values) checked
        and typed. The reader and its arguments are checked first, so an unknown dataset is named as such
        before any section that depends on it."""
        values = plain(section)
        names = [f.name for f in dataclasses.fields(cls)]
        if not isinstance(values, Mapping):
            raise MDReIDError(f"data={values!r}: expected a mapping of {', '.join(names)}")
        values = dict(values)
        target = values.pop("_target_", TARGET)
        if target != TARGET:
            raise MDReIDError(
                f"data._target_={target}: the data section builds {TARGET.rsplit('.', 1)[0]}; drop the "
                "override (data of your own is read by a registered reader: docs/extending.md)"
            )
        reject_unknown_keys(values, names, "data")
        for key in REQUIRED:
            if values.get(key) is None:
                raise MDReIDError(f"data.{key} is not set; set it: data.{key}=...")
        if isinstance(values["dataset"], str):
            values["dataset"] = values["dataset"].lower()
        source = typed_view(_Source, values, "data")
        if source.reader_args is not None and not isinstance(source.reader_args, Mapping):
            raise MDReIDError(
                f"data.reader_args={source.reader_args!r}: expected a mapping of the reader's keywords or null"
            )
        reader(source.dataset, source.reader_args)  # an unknown reader, or arguments it does not take
        fixed: dict[str, Any] = {f.name: getattr(source, f.name) for f in dataclasses.fields(source)}
        nested = {key: values.pop(key, None) for key in (*_DEPENDENT, *fixed)}
        fixed["modality_dropout"] = ModalityDropout.from_config(nested["modality_dropout"], source.seed)
        fixed["synth"] = synth_config(nested["synth"], source.dataset)
        return typed_section(cls, values, "data", fixed=fixed)

    def hparams(self) -> dict[str, Any]:
        """The section as plain data, in the form ``parse`` reads: what a checkpoint stores."""
        dropout = self.modality_dropout
        rule = self.high_bit_depth
        return {
            "dataset": self.dataset,
            "root": self.root,
            "image_size": list(self.image_size),
            "batch_size": self.batch_size,
            "num_instances": self.num_instances,
            "eval_batch_size": self.eval_batch_size,
            "num_workers": self.num_workers,
            "on_missing": self.on_missing,
            "on_bad_name": self.on_bad_name,
            "modality_dropout": {"p": dropout.p, "mode": dropout.mode},
            "sync_augment": self.sync_augment,
            "random_erasing": self.random_erasing,
            "seed": self.seed,
            "synth": dataclasses.asdict(self.synth) if self.synth is not None else None,
            "manifest": self.manifest,
            "high_bit_depth": {"mode": rule.mode, "range": list(rule.range) if rule.range else None},
            "val": self.val.plain(),
            "reader_args": dict(self.reader_args) if self.reader_args is not None else None,
        }


def _count(key: str, value: int, minimum: int) -> None:
    """An integer config value below ``minimum`` is one error line naming ``key``."""
    if value < minimum:
        raise MDReIDError(f"{key}={value!r}: use an integer >= {minimum}")
