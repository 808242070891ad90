"""The LightningDataModule: a benchmark's Records -> PK training batches and sharded evaluation batches.

Validation runs on training identities held out by ``data.val`` (``mdreid.data.val_split``), testing on the
test split; ``data.val=none`` trains on every identity and has no validation loader.

Sharding is done here, not by Lightning: the Trainer must run with ``use_distributed_sampler=False``
(conf/trainer/default.yaml sets it). Training uses the DDP-aware ``PKSampler``; validation and test use the
unpadded ``ShardSampler`` over the evaluation listing (each image once, with its query/gallery roles).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from mdreid.config.sections import plain
from mdreid.data.bit_depth import BitDepthRule
from mdreid.data.dist_ranks import rank_and_world
from mdreid.data.modality_dropout import ModalityDropout
from mdreid.data.pk_sampler import PKSampler, check_pk_batch
from mdreid.data.readers import benchmark_folder, load_benchmark, reader
from mdreid.data.records import Benchmark
from mdreid.data.shard_sampler import ShardSampler
from mdreid.data.synth_config import synth_config
from mdreid.data.transforms import TripletTransform, check_image_size
from mdreid.data.triplet_dataset import EvalTripletDataset, TrainTripletDataset
from mdreid.data.val_split import ValConfig, split_validation
from mdreid.process.errors import MDReIDError

log = logging.getLogger(__name__)


def _count(key: str, value: Any, minimum: int) -> int:
    """An integer config value of at least ``minimum``, or one error line naming ``key``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise MDReIDError(f"{key}={value!r}: use an integer >= {minimum}")
    return value


class MultiModalReIDDataModule(L.LightningDataModule):
    """RGBNT201 / RGBNT100 / MSVR310 (or a synthetic copy) as aligned R/N/T triplet batches.

    Args:
        dataset: benchmark name (rgbnt201, rgbnt100, msvr310), ``manifest`` for your own data, or the name of
            a registered reader (docs/extending.md).
        root: folder that contains the benchmark's top folder (``RGBNT201/``, ...).
        image_size: (H, W) every modality image is resized to.
        batch_size: GLOBAL number of triplets per optimizer step over all devices. P = batch_size //
            num_instances identities per step are split as whole identities across devices, each of which
            loads batch_size // world_size triplets; P must be divisible by the device count.
        num_instances: K, triplets per identity in a batch.
        eval_batch_size: triplets per evaluation batch, PER device.
        num_workers: DataLoader worker processes per device (results do not depend on it).
        on_missing / on_bad_name: "error" or "skip" triplets with a missing modality file / a bad filename.
        modality_dropout: ``{"p": float, "mode": "sample" | "batch"}`` to drop modalities in training; None = off.
        sync_augment: same flip, crop and erase box for R, N and T (the official code draws them independently).
        random_erasing: probability of timm RandomErasing in training.
        seed: seed of the sampler order, augmentation and modality dropout.
        synth: ``{"like", "preset", "ids", "seed"}``: generate a synthetic copy under ``root`` when the
            benchmark folder is absent there; None = a missing dataset is an error.
        manifest: the CSV / JSON Lines file of ``dataset="manifest"`` (docs/manifest.md); ``root`` is unused.
        high_bit_depth: ``{"mode": "stretch" | "range", "range": [lo, hi] | None}``: how 16-bit and float
            images map to 0..255 (``mdreid.data.bit_depth``); None = per-image stretch.
        reader_args: the keyword arguments of a registered reader; None = none.
        val: the validation split (``ValConfig``): ``{"ids", "min_ids", "seed"}`` or ``"holdout"`` (its
            defaults) holds training identities out; ``"none"`` trains on all of them; ``"test"``
            validates on the test split.
    """

    def __init__(
        self,
        dataset: str,
        root: str,
        image_size: Sequence[int],
        batch_size: int = 64,
        num_instances: int = 8,
        eval_batch_size: int = 128,
        num_workers: int = 4,
        on_missing: str = "error",
        on_bad_name: str = "error",
        modality_dropout: Mapping[str, Any] | None = None,
        sync_augment: bool = False,
        random_erasing: float = 0.5,
        seed: int = 0,
        synth: Mapping[str, Any] | None = None,
        manifest: str | None = None,
        high_bit_depth: Mapping[str, Any] | None = None,
        val: Mapping[str, Any] | str | None = "holdout",
        reader_args: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        # plain values (Hydra hands over OmegaConf nodes), so that checkpoints hold data only
        args = {k: plain(v) for k, v in locals().items() if k not in ("self", "__class__")}
        self.save_hyperparameters(args, logger=False)
        reader(dataset, args["reader_args"])  # an unknown reader, or arguments it does not take, stop here
        self.dataset = dataset.lower()
        self.reader_args = args["reader_args"]
        if (self.dataset == "manifest") != bool(manifest):
            raise MDReIDError(
                "data.manifest names the CSV / JSON Lines file of data.dataset=manifest, and only of it: "
                f"got data.dataset={self.dataset} with data.manifest={manifest}"
            )
        self.manifest = str(manifest) if manifest else None
        self.root = str(root)
        self.image_size = check_image_size(image_size)
        self.batch_size = check_pk_batch(batch_size, num_instances)
        self.num_instances = num_instances
        self.eval_batch_size = _count("data.eval_batch_size", eval_batch_size, 1)
        self.num_workers = _count("data.num_workers", num_workers, 0)
        self.on_missing = on_missing
        self.on_bad_name = on_bad_name
        self.dropout = ModalityDropout.from_config(modality_dropout, seed)
        self.sync_augment = sync_augment
        self.random_erasing = random_erasing
        self.seed = seed
        self.synth = synth_config(synth, self.dataset)
        self.bit_depth = BitDepthRule.from_config(high_bit_depth)
        self.val = ValConfig.parse(val)
        self._benchmark: Benchmark | None = None
        self.train_set: TrainTripletDataset | None = None
        self.val_set: EvalTripletDataset | None = None
        self.eval_set: EvalTripletDataset | None = None

    # ---- data on disk ----------------------------------------------------------------------------------

    def _ensure_synthetic(self) -> None:
        """With ``synth`` set, write the synthetic copy when the benchmark folder is absent under ``root``.

        The generator renames a finished tree into place, so concurrent processes (ranks, nodes) never read a
        half-written copy; one that loses the race finds the folder there and uses it. A copy generated
        from another recipe (preset, ids, seed, coupling) is an error, never silently reused.
        """
        if self.synth is None:
            return
        from mdreid.data.synthetic.generate import (
            generate,
            read_recipe,
            recipe,
        )  # only synthetic runs need these

        if self.dataset == "manifest":  # synth.like=unpaired: the manifest and its images, written together
            from mdreid.data.synthetic.unpaired import generate_unpaired

            if not Path(self.manifest).exists():
                log.info("%s not found: generating a synthetic unpaired copy there", self.manifest)
                synth = self.synth
                generate_unpaired(
                    self.manifest,
                    ids=synth.ids,
                    seed=synth.seed,
                    preset=synth.preset,
                    coupling=synth.coupling,
                )
            return
        root = Path(self.root)
        if root.exists() and not root.is_dir():
            raise MDReIDError(
                f"data.root={self.root} is a file; point it at a folder to hold (or holding) the synthetic copy"
            )
        target = root / benchmark_folder(self.dataset)
        if target.exists():
            wanted = recipe(
                self.dataset,
                self.synth.ids,
                self.synth.seed,
                self.synth.preset,
                self.synth.coupling,
            )
            found = read_recipe(target)
            if found is not None and found != wanted:
                raise MDReIDError(
                    f"{target} is a synthetic copy generated with {found}, but data.synth asks for {wanted}: "
                    "point data.root at another folder or delete that one"
                )
            return
        log.info("%s not found: generating a synthetic copy (preset %s) there", target, self.synth.preset)
        try:
            generate(
                self.synth.like,
                self.root,
                ids=self.synth.ids,
                seed=self.synth.seed,
                preset=self.synth.preset,
                coupling=self.synth.coupling,
            )
        except MDReIDError:
            if not target.exists():
                raise
        except OSError as err:  # read-only mount, no permission, disk full
            raise MDReIDError(
                f"data.root={self.root}: cannot write the synthetic copy there ({type(err).__name__}: "
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
                self.dataset,
                self.manifest or self.root,
                on_missing=self.on_missing,
                on_bad_name=self.on_bad_name,
                reader_args=self.reader_args,
            )
            self._benchmark = split_validation(loaded, self.val)
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
                self.image_size, train=True, random_erasing=self.random_erasing, sync=self.sync_augment
            )
            self.train_set = TrainTripletDataset(
                self.benchmark.train, transform, self.dropout, self.seed, self.bit_depth
            )
        transform = TripletTransform(self.image_size, train=False)
        if self.val_set is None and stage in (None, "fit", "validate") and self.has_validation:
            self.val_set = EvalTripletDataset(self.benchmark.val, transform, self.bit_depth)
        if self.eval_set is None:
            self.eval_set = EvalTripletDataset(self.benchmark, transform, self.bit_depth)

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
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        """PK batches of batch_size // world_size triplets: this device's whole identities of each step."""
        self.setup("fit")
        rank, world = self._rank_and_world()
        sampler = PKSampler(
            [r.pid for r in self.train_set.records],
            self.batch_size,
            self.num_instances,
            self.seed,
            rank,
            world,
        )
        return self._loader(self.train_set, sampler, sampler.per_rank_batch, drop_last=True)

    def _eval_dataloader(self, dataset: EvalTripletDataset) -> DataLoader:
        rank, world = self._rank_and_world()
        sampler = ShardSampler(len(dataset), rank, world)
        return self._loader(dataset, sampler, self.eval_batch_size, drop_last=False)

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
