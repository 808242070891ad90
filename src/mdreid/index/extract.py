"""Features of any records (a benchmark split, manifest rows, or image files named on the command line).

Images go through the evaluation transform of the model's input size and ``net.extract``, exactly as the
metric's features (``ReIDModule._update_metric``): absent modalities stay zero and are masked by ``present``;
a single-token baseline's feature is stored as the shared one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader

from mdreid.data.records import Benchmark, Record
from mdreid.data.transforms import TripletTransform
from mdreid.data.triplet_dataset import EvalTripletDataset
from mdreid.index.store import GalleryItems
from mdreid.modalities import MODALITIES
from mdreid.module import ReIDModule
from mdreid.process.errors import MDReIDError


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@torch.no_grad()
def extract_items(
    model: ReIDModule,
    records: Sequence[Record],
    batch_size: int = 32,
    device: torch.device | None = None,
    num_workers: int = 0,
) -> GalleryItems:
    """Per-modality features and metadata of ``records``, in their order."""
    if not records:
        raise MDReIDError("no images to extract features from")
    records = list(records)
    device = device or torch.device("cpu")
    model = model.to(device).eval()
    transform = TripletTransform(model.hparams["image_size"], train=False)
    dataset = EvalTripletDataset(Benchmark("items", "", query=records, gallery=records), transform)
    sp_parts, sh_parts, present_parts = [], [], []
    for batch in DataLoader(dataset, batch_size=batch_size, num_workers=num_workers):
        images = {m: batch[m].to(device) for m in MODALITIES}
        sp, sh = model.net.extract(images, batch["present"].to(device), batch["camid"].to(device))
        if sh is None:  # single-token baseline: its one feature is compared across modalities, like sh
            sp, sh = None, sp
        sp_parts.append(None if sp is None else sp.float().cpu())
        sh_parts.append(sh.float().cpu())
        present_parts.append(batch["present"])
    return GalleryItems(
        sp=None if sp_parts[0] is None else torch.cat(sp_parts),
        sh=torch.cat(sh_parts),
        present=torch.cat(present_parts),
        pid=torch.tensor([r.pid for r in records], dtype=torch.long),
        camid=torch.tensor([r.camid for r in records], dtype=torch.long),
        sceneid=torch.tensor([r.sceneid for r in records], dtype=torch.long),
        paths=[tuple(r.paths) for r in records],
        stitched=[r.stitched for r in records],
    )
