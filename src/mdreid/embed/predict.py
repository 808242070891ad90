"""Embedding many items on 1..N devices through Lightning's predict loop, with the same result for any count.

The items are cut into fixed batches of ``batch_size`` in input order, and batch b runs on rank
``b mod world_size``: every batch holds the same items whatever the number of devices, so each item's
features come from the same float operations. Each rank writes its batches to a part file; the launching
process joins the parts by item index and checks that every item came back exactly once.
"""

from __future__ import annotations

import math
import multiprocessing
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.strategies import DDPStrategy
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Dataset

from mdreid.embed.embedder import Embedder, extract
from mdreid.embed.embeddings import Embeddings
from mdreid.embed.sources import Items
from mdreid.process.errors import MDReIDError


class EmbedBatches(Dataset):
    """Batch b: the preprocessed images of items ``[b * size, (b + 1) * size)``, collated."""

    def __init__(self, embedder: Embedder, items: Items, size: int) -> None:
        self.embedder, self.source, self.camid, self.size = embedder, items.source, items.camid, size
        self.total = len(items)

    def __len__(self) -> int:
        return math.ceil(self.total / self.size)

    def __getitem__(self, b: int) -> dict[str, Any]:
        rows = range(b * self.size, min(self.total, (b + 1) * self.size))
        tensors = [self.embedder.preprocess(self.source.images(i), f"item {i}") for i in rows]
        images, present = self.embedder.collate(tensors)
        return {
            "images": images,
            "present": present,
            "camid": self.camid[rows.start : rows.stop],
            "rows": torch.tensor(rows),
        }


class EmbedTask(L.LightningModule):
    """The model's feature extraction as a predict step over ``EmbedBatches`` (this rank's share)."""

    def __init__(self, embedder: Embedder, items: Items, batch_size: int, num_workers: int) -> None:
        super().__init__()
        self.net = embedder.module.net
        self.batches = EmbedBatches(embedder, items, batch_size)
        self.num_workers = num_workers

    def predict_dataloader(self) -> DataLoader:
        mine = list(range(self.global_rank, len(self.batches), self.trainer.world_size))
        return DataLoader(self.batches, batch_size=None, sampler=mine, num_workers=self.num_workers)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        out = extract(self.net, batch["images"], batch["present"], batch["camid"])
        return {
            **{k: v for k, v in out.items() if v is not None},
            "present": batch["present"].cpu(),
            "camid": batch["camid"].cpu(),
            "rows": batch["rows"].cpu(),
        }


class PartWriter(BasePredictionWriter):
    """Each rank's predictions into ``folder/rank-R.safetensors`` at the end of the loop."""

    def __init__(self, folder: Path) -> None:
        super().__init__(write_interval="epoch")
        self.folder = folder

    def write_on_epoch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, predictions: Any, batch_indices: Any
    ) -> None:
        parts = predictions[0] if predictions and isinstance(predictions[0], list) else predictions
        joined = {k: torch.cat([p[k] for p in parts]) for k in parts[0]} if parts else {}
        save_file(
            {k: v.contiguous() for k, v in joined.items()},
            self.folder / f"rank-{trainer.global_rank}.safetensors",
        )


def _joined(folder: Path, total: int, mode: str) -> Embeddings:
    parts = [load_file(p) for p in sorted(folder.glob("rank-*.safetensors"))]
    parts = [p for p in parts if p]
    rows = torch.cat([p["rows"] for p in parts]) if parts else torch.zeros(0, dtype=torch.long)
    if not torch.equal(rows.sort().values, torch.arange(total)):
        raise MDReIDError(f"the devices returned {len(rows)} item(s) for {total}; the run did not finish")
    order = rows.argsort()
    joined = {k: torch.cat([p[k] for p in parts])[order] for k in parts[0] if k != "rows"}
    return Embeddings.from_mapping(joined, mode)


def _strategy(accelerator: str, devices: int) -> Any:
    """One process per device, started by a fork server that imported torch, Lightning and this module once:
    cheaper than spawning (each spawned process imports them again) and safe where forking the running
    process is not (a lock held by another thread, a CUDA context)."""
    if devices == 1:
        return "auto"
    multiprocessing.set_forkserver_preload(["torch", "lightning", "mdreid.embed.predict"])
    return DDPStrategy(start_method="forkserver")


def predict(
    embedder: Embedder,
    items: Items,
    scratch: Path,
    accelerator: str = "auto",
    devices: int = 1,
    num_workers: int = 0,
    progress: bool = True,
) -> tuple[Embeddings, float]:
    """Every item's features (in item order) and the seconds the predict loop took. ``scratch`` is a folder
    for the ranks' part files (removed afterwards)."""
    from mdreid.lightning_plugins.plain_progress import progress_bar

    if devices < 1:
        raise MDReIDError(f"--devices {devices}: must be at least 1")
    folder = Path(tempfile.mkdtemp(prefix=".embed-parts-", dir=scratch))
    try:
        trainer = L.Trainer(
            accelerator=accelerator,
            devices=devices,
            strategy=_strategy(accelerator, devices),
            precision=embedder.precision,
            callbacks=[PartWriter(folder), *([progress_bar()] if progress else [])],
            enable_progress_bar=progress,
            logger=False,
            use_distributed_sampler=False,
            enable_model_summary=False,
            default_root_dir=str(folder),
        )
        task = EmbedTask(embedder, items, embedder.batch_size, num_workers)
        start = time.perf_counter()
        with warnings.catch_warnings():  # the batch indices are in each batch ("rows"), not the sampler's
            warnings.filterwarnings("ignore", message="Couldn't infer the batch indices")
            trainer.predict(task, return_predictions=False)
        seconds = time.perf_counter() - start
        return _joined(folder, len(items), embedder.mode), seconds
    finally:
        shutil.rmtree(folder, ignore_errors=True)
