"""Torch datasets over ``Record`` lists: training triplets (keyed by PK ``Draw``s) and the evaluation listing.

Items are ``Batch`` dicts (``data.batch``): the R/N/T images (zeros when absent), the presence mask, the ids,
``label`` (-1 in evaluation) and ``index``, plus ``is_query`` and ``is_gallery`` in evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from mdreid.data.batch import Batch
from mdreid.data.bit_depth import BitDepthRule, open_rgb
from mdreid.data.modality_dropout import ALL_PRESENT, ModalityDropout
from mdreid.data.pk_sampler import Draw
from mdreid.data.readers.rgbnt100 import PANEL_BOXES, PANEL_SIZE, STITCHED_SIZE
from mdreid.data.records import Benchmark, Record
from mdreid.data.transforms import TripletTransform
from mdreid.process.errors import MDReIDError

_AUG_STREAM = 0x5EED_0003  # separates the augmentation seeds from the sampler's and the dropout's
DEFAULT_RULE = BitDepthRule()


def read_image(path: str, rule: BitDepthRule) -> Image.Image:
    """A decoded RGB image (16-bit and float ones mapped by ``rule``); a corrupt or truncated file is an error
    naming it (PIL raises several types)."""
    try:
        return open_rgb(path, rule)
    except MDReIDError:
        raise
    except Exception as err:  # noqa: BLE001 - OSError, SyntaxError, ValueError, DecompressionBombError...
        raise MDReIDError(
            f"{path}: cannot read the image ({err}); restore the file or re-copy the dataset "
            "(`python -m mdreid.data verify --dataset NAME --root PATH` lists every bad file)"
        ) from err


def read_modalities(
    record: Record, present: Sequence[bool] = ALL_PRESENT, rule: BitDepthRule = DEFAULT_RULE
) -> list[Image.Image]:
    """The present modality images of a triplet, as 3-channel PIL images in R, N, T order.

    A stitched record is one strip cut into three panels; a strip of the wrong size is an error rather than
    PIL's silent black padding. ``rule`` maps 16-bit and float files (per file, so a strip as a whole).
    """
    if record.stitched:
        strip = read_image(record.paths[0], rule)
        if strip.size != STITCHED_SIZE:
            raise MDReIDError(
                f"{record.paths[0]}: stitched image is {strip.size[0]}x{strip.size[1]}, expected "
                f"{STITCHED_SIZE[0]}x{STITCHED_SIZE[1]} (RGB | NIR | TIR panels of {PANEL_SIZE[0]}x{PANEL_SIZE[1]}); replace the file"
            )
        return [strip.crop(box) for box, keep in zip(PANEL_BOXES, present, strict=True) if keep]
    return [read_image(path, rule) for path, keep in zip(record.paths, present, strict=True) if keep]


def _item(
    record: Record,
    tensors: list[torch.Tensor],
    present: Sequence[bool],
    size: tuple[int, int],
    label: int,
    index: int,
) -> Batch:
    """Assemble one item; absent modalities become zero images (``present`` is in R, N, T order)."""
    images = iter(tensors)
    rgb, ni, ti = (next(images) if keep else torch.zeros(3, *size) for keep in present)
    return Batch(
        RGB=rgb,
        NI=ni,
        TI=ti,
        present=torch.tensor(present, dtype=torch.bool),
        pid=torch.tensor(record.pid),
        camid=torch.tensor(record.camid),
        sceneid=torch.tensor(record.sceneid),
        label=torch.tensor(label),
        index=torch.tensor(index),
    )


class TrainTripletDataset(Dataset):
    """Augmented training triplets with optional modality dropout, indexed by the PK sampler's ``Draw``s.

    All randomness (augmentation and dropout) is seeded from ``(seed, epoch, global stream position)``
    carried by the draw, so a batch is the same for any ``num_workers`` and any device count.
    """

    def __init__(
        self,
        records: Sequence[Record],
        transform: TripletTransform,
        dropout: ModalityDropout | None = None,
        seed: int = 0,
        rule: BitDepthRule = DEFAULT_RULE,
    ) -> None:
        self.records = list(records)
        self.transform = transform
        self.dropout = dropout or ModalityDropout(seed=seed)
        self.seed = seed
        self.rule = rule

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, draw: Draw) -> Batch:
        record = self.records[draw.index]
        present = self.dropout.presence(draw.epoch, draw.position, draw.batch, record.present)
        seed = int(
            np.random.SeedSequence([self.seed, _AUG_STREAM, draw.epoch, draw.position]).generate_state(1)[0]
        )
        tensors = self.transform(read_modalities(record, present, self.rule), seed=seed)
        return _item(record, tensors, present, self.transform.size, record.label, draw.index)


class EvalTripletDataset(Dataset):
    """The evaluation listing: each image once, with its query/gallery roles.

    When query and gallery are the same list (RGBNT201) the records appear once with both roles; otherwise
    the query records come first, then the gallery records, each with one role. ``index`` is the position
    in this listing, which the metric uses to de-duplicate.
    """

    def __init__(
        self, benchmark: Benchmark, transform: TripletTransform, rule: BitDepthRule = DEFAULT_RULE
    ) -> None:
        if benchmark.query_is_gallery:
            self.records = list(benchmark.query)
            self.roles = [(True, True)] * len(self.records)
        else:
            self.records = list(benchmark.query) + list(benchmark.gallery)
            self.roles = [(True, False)] * len(benchmark.query) + [(False, True)] * len(benchmark.gallery)
        self.transform = transform
        self.rule = rule

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Batch:
        record = self.records[index]
        images = self.transform(read_modalities(record, record.present, self.rule))
        item = _item(record, images, record.present, self.transform.size, label=-1, index=index)
        item["is_query"] = torch.tensor(self.roles[index][0])
        item["is_gallery"] = torch.tensor(self.roles[index][1])
        return item
