"""The LightningDataModule: a benchmark's Records -> PK training batches and sharded evaluation batches.

Validation runs on training identities held out by ``data.val`` (``mdreid.data.val_split``), testing on the
test split; ``data.val=none`` trains on every identity and has no validation loader.

Sharding is done here, not by Lightning: the Trainer must run with ``use_distributed_sampler=False``
(conf/trainer/default.yaml sets it). Training uses the DDP-aware ``PKSampler``; validation and test use the
unpadded ``ShardSampler`` over the evaluation listing (each image once, with its query/gallery roles).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from mdreid.data.data_config import DataConfig
from mdreid.data.dist_ranks import rank_and_world
from mdreid.data.pk_sampler import PKSampler
from mdreid.data.readers import benchmark_folder, load_benchmark
from mdreid.data.records import Benchmark
from mdreid.data.shard_sampler import ShardSampler
from mdreid.data.transforms import TripletTransform
from mdreid.data.triplet_dataset import EvalTripletDataset, TrainTripletDataset
from mdreid.data.val_split import split_validation
from mdreid.process.errors import MDReIDError

log = logging.getLogger(__name__)


class MultiModalReIDDataModule(L.LightningDataModule):
    """RGBNT201 / RGBNT100 / MSVR310 (or a synthetic copy) as aligned R/N/T triplet batches.

    Built from the checked ``data`` section (``DataConfig``: its keys, defaults and checks), which it keeps as
    ``config`` and saves into checkpoints as plain data. ``batch_size`` is GLOBAL: P = batch_size //
    num_instances identities per step are split as whole identities across devices, each of which loads
    batch_size // world_size triplets; P must be divisible by the device count.
    """

    def __init__(self, config: DataConfig) -> None:
        super().__init__()
        self.save_hyperparameters(config.hparams(), logger=False)  # plain data: checkpoints load as data
        self.config = config
        self.image_size = config.image_size
        self._benchmark: Benchmark | None = None
        self.train_set: TrainTripletDataset | None = None
        self.val_set: EvalTripletDataset | None = None
        self.eval_set: EvalTripletDataset | None = None

    @classmethod
    def from_section(cls, **section: Any) -> MultiModalReIDDataModule:
        """Hydra's ``instantiate(cfg.data)`` (the ``_target_`` of conf/data/default.yaml): the section parsed."""
        return cls(DataConfig.parse(section))

    # ---- data on disk ----------------------------------------------------------------------------------

    def _ensure_synthetic(self) -> None:
        """With ``synth`` set, write the synthetic copy when the benchmark folder is absent under ``root``.

        The generator renames a finished tree into place, so concurrent processes (ranks, nodes) never read a
        half-written copy; one that loses the race finds the folder there and uses it. A copy generated
        from another recipe (preset, ids, seed, coupling) is an error, never silently reused.
        """
        data, synth = self.config, self.config.synth
        if synth is None:
            return
        from mdreid.data.synthetic.generate import (
            generate,
            read_recipe,
            recipe,
        )  # only synthetic runs need these

        if data.dataset == "manifest":  # synth.like=unpaired: the manifest and its images, written together
            from mdreid.data.synthetic.unpaired import generate_unpaired

            if not Path(data.manifest).exists():
                log.info("%s not found: generating a synthetic unpaired copy there", data.manifest)
                generate_unpaired(
                    data.manifest,
                    ids=synth.ids,
                    seed=synth.seed,
                    preset=synth.preset,
                    coupling=synth.coupling,
                )
            return
        root = Path(data.root)
        if root.exists() and not root.is_dir():
            raise MDReIDError(
                f"data.root={data.root} is a file; point it at a folder to hold (or holding) the synthetic copy"
            )
        target = root / benchmark_folder(data.dataset)
        if target.exists():
            wanted = recipe(data.dataset, synth.ids, synth.seed, synth.preset, synth.coupling)
            found = read_recipe(target)
            if found is not None and found != wanted:
                raise MDReIDError(
                    f"{target} is a synthetic copy generated with {found}, but data.synth asks for {wanted}: "
                    "point data.root at another folder or delete that one"
                )
            return
        log.info("%s not found: generating a synthetic copy (preset %s) there", target, synth.preset)
        try:
            generate(
                synth.like,
                data.root,
                ids=synth.ids,
                seed=synth.seed,
                preset=synth.preset,
                coupling=synth.coupling,
            )
        except MDReIDError:
            if not target.exists():
                raise
        except OSError as err:  # read-only mount, no permission, disk full
            raise MDReIDError(
                f"data.root={data.root}: cannot write the synthetic copy there ({type(err).__name__}: "
                f"{err.strerror or err}); point data.root at a writable folder"
            ) from err

    def prepare_data(self) -> None:
        """Generate the synthetic copy if configured and absent (Lightning runs this on one process per node)."""
        self._ensure_synthetic()

    @property
    def benchmark(self) -> Benchmark:
        """The indexed splits with the validation split carved out, read once and cached (generating synthetic
        data first if configured)."""
        if self._benchmark is None:
            self._ensure_synthetic()
            loaded = load_benchmark(
                self.config.dataset,
                self.config.manifest or self.config.root,
                on_missing=self.config.on_missing,
                on_bad_name=self.config.on_bad_name,
                reader_args=self.config.reader_args,
            )
            self._benchmark = split_validation(loaded, self.config.val)
        return self._benchmark

    @property
    def num_classes(self) -> int:
        return self.benchmark.num_classes

    @property
    def num_cameras(self) -> int:
        return self.benchmark.num_cameras

    @property
    def junk_rule(self) -> str:
        return self.benchmark.junk_rule

    @property
    def has_validation(self) -> bool:
        return self.benchmark.val is not None

    @property
    def num_query(self) -> int:
        return len(self.benchmark.query)

    @property
    def num_gallery(self) -> int:
        return len(self.benchmark.gallery)

    # ---- datasets and loaders ------------------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        """Training data only for fitting: evaluating a checkpoint needs no training split."""
        if self.train_set is None and stage in (None, "fit"):
            transform = TripletTransform(
                self.image_size,
                train=True,
                random_erasing=self.config.random_erasing,
                sync=self.config.sync_augment,
            )
            self.train_set = TrainTripletDataset(
                self.benchmark.train,
                transform,
                self.config.modality_dropout,
                self.config.seed,
                self.config.high_bit_depth,
            )
        transform = TripletTransform(self.image_size, train=False)
        if self.val_set is None and stage in (None, "fit", "validate") and self.has_validation:
            self.val_set = EvalTripletDataset(self.benchmark.val, transform, self.config.high_bit_depth)
        if self.eval_set is None:
            self.eval_set = EvalTripletDataset(self.benchmark, transform, self.config.high_bit_depth)

    def _rank_and_world(self) -> tuple[int, int]:
        """The attached Trainer's rank and world size, else the process group's, else a single process."""
        if self.trainer is not None:
            return self.trainer.global_rank, self.trainer.world_size
        return rank_and_world()

    def _loader(self, dataset: Dataset, sampler: Sampler, batch_size: int, drop_last: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=drop_last,
            num_workers=self.config.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.config.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        """PK batches of batch_size // world_size triplets: this device's whole identities of each step."""
        self.setup("fit")
        rank, world = self._rank_and_world()
        sampler = PKSampler(
            [r.pid for r in self.train_set.records],
            self.config.batch_size,
            self.config.num_instances,
            self.config.seed,
            rank,
            world,
        )
        return self._loader(self.train_set, sampler, sampler.per_rank_batch, drop_last=True)

    def _eval_dataloader(self, dataset: EvalTripletDataset) -> DataLoader:
        rank, world = self._rank_and_world()
        sampler = ShardSampler(len(dataset), rank, world)
        return self._loader(dataset, sampler, self.config.eval_batch_size, drop_last=False)

    def val_dataloader(self) -> DataLoader:
        """The validation split's listing; there is none with ``data.val=none`` (the Trainer is then built
        with ``limit_val_batches=0``, so this is never asked for)."""
        self.setup("validate")
        if self.val_set is None:
            raise MDReIDError("data.val=none: this run has no validation split to evaluate")
        return self._eval_dataloader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        self.setup("test")
        return self._eval_dataloader(self.eval_set)
