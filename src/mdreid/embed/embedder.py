"""``mdreid.Embedder``: a trained model as a function from images to any-to-any features.

    embedder = Embedder.from_checkpoint("last.ckpt")            # or an official MDReID .pth
    query = embedder.embed(tir="night.png", camid=2)              # one item, any subset of R / N / T
    gallery = embedder.embed(rgb=[a, b, None], nir=[x, None, y])  # a batch; items may have different modalities
    scores = query.similarity(gallery, "T", "RN")                 # the metric's similarity of that pair

The preprocessing is the evaluation's: decoding (the checkpoint's high-bit-depth rule), the test transform
at the checkpoint's input size, absent modalities as zeros masked by ``present``, ``net.extract``. Embedding
a test split in evaluation's order and batch size gives ``mdreid.eval``'s saved features bit for bit.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mdreid.checkpoint import Checkpoint, resolve_checkpoint
from mdreid.data.bit_depth import BitDepthRule
from mdreid.data.transforms import TripletTransform
from mdreid.embed.embeddings import Embeddings
from mdreid.embed.inputs import ImageLike, to_pil
from mdreid.modalities import MODALITIES
from mdreid.module import ReIDModule
from mdreid.process.errors import MDReIDError

log = logging.getLogger(__name__)

PRECISIONS: dict[str, torch.dtype | None] = {
    "32-true": None,
    "16-mixed": torch.float16,
    "bf16-mixed": torch.bfloat16,
}
ARGUMENTS: tuple[str, ...] = ("rgb", "nir", "tir")  # embed()'s keywords, in the order of MODALITIES
NO_CAMERA = -1  # a camera id the model has no embedding for: the image gets none (as SIE off)


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"``: the first GPU if there is one, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def extract(net: Any, images: dict[str, Tensor], present: Tensor, camid: Tensor) -> dict[str, Tensor]:
    """``net.extract`` as evaluation calls it, as float32 CPU ``sp`` (None: one feature per modality, then
    stored as ``sh``, as the metric compares it) and ``sh``."""
    sp, sh = net.extract(images, present, camid)
    if sh is None:
        sp, sh = None, sp
    return {"sp": None if sp is None else sp.float().cpu(), "sh": sh.float().cpu()}


def _as_list(value: Any) -> list[Any] | None:
    """A batch argument as a list of items (None = absent); a single item as None (not a batch)."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, (np.ndarray, Tensor)) and value.ndim == 4:
        return list(value)
    return None


class Embedder:
    """A loaded model and its preprocessing; ``embed`` turns images into ``Embeddings``."""

    def __init__(
        self,
        module: ReIDModule,
        rule: BitDepthRule | None = None,
        device: str | torch.device = "auto",
        precision: str = "32-true",
        batch_size: int = 32,
    ) -> None:
        if precision not in PRECISIONS:
            raise MDReIDError(f"precision={precision!r}: use one of {', '.join(PRECISIONS)}")
        if batch_size < 1:
            raise MDReIDError(f"batch_size={batch_size}: must be at least 1")
        self.device = resolve_device(device)
        if self.device.type == "cpu" and PRECISIONS[precision] is not None:
            log.info("on the CPU: precision=%s -> 32-true", precision)
            precision = "32-true"
        self.precision = precision
        self.module = module.to(self.device).eval()
        self.rule = rule or BitDepthRule()
        self.batch_size = batch_size
        self.transform = TripletTransform(module.hparams["image_size"], train=False)
        self.num_cameras = int(module.hparams["num_cameras"])
        self.mode = str(module.hparams["evaluation"].get("similarity", "code"))

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path | Checkpoint,
        device: str | torch.device = "auto",
        precision: str = "32-true",
        *,
        image_size: Sequence[int] | None = None,
        batch_size: int = 32,
        trust: bool = False,
    ) -> Embedder:
        """The model of an mdreid checkpoint or an official MDReID ``.pth`` (a path, or a file already
        opened by ``resolve_checkpoint``), read as data (never unpickled unless ``trust``); ``image_size`` settles an official file's input size where its weights do not."""
        from mdreid.factory import load_module

        ckpt = path if isinstance(path, Checkpoint) else resolve_checkpoint(path, key="path", trust=trust)
        module = load_module(ckpt, image_size=image_size)
        return cls(module, ckpt.image_rule, device, precision, batch_size)

    @property
    def image_size(self) -> tuple[int, int]:
        return self.transform.size

    # ------------------------------------------------------------------------------------------ inputs
    def _items(self, given: dict[str, Any]) -> list[dict[str, ImageLike]]:
        """One ``{modality: image}`` per item from ``embed``'s keywords (single items or equal-length lists)."""
        given = {m: v for m, v in given.items() if v is not None}
        if not given:
            raise MDReIDError("embed: give at least one of rgb=, nir=, tir=")
        batches = {m: _as_list(v) for m, v in given.items()}
        if all(b is None for b in batches.values()):
            return [given]
        singles = [m for m, b in batches.items() if b is None]
        if singles:
            raise MDReIDError(
                f"embed: {', '.join(a + '=' for a in singles)} is one image but the others are batches; "
                "give lists of the same length (None where an item lacks that modality)"
            )
        lengths = {m: len(b) for m, b in batches.items()}  # type: ignore[arg-type]
        if len(set(lengths.values())) != 1:
            raise MDReIDError(
                f"embed: the batches have different lengths ({lengths}); give one entry per item"
            )
        n = next(iter(lengths.values()))
        items = [{m: b[i] for m, b in batches.items() if b[i] is not None} for i in range(n)]  # type: ignore[index]
        empty = [i for i, item in enumerate(items) if not item]
        if empty:
            raise MDReIDError(
                f"embed: item {empty[0]} has no image in any modality ({len(empty)} such items)"
            )
        return items

    def camids(self, camid: int | Sequence[int] | Tensor | None, n: int) -> Tensor:
        if camid is None:
            return torch.full((n,), NO_CAMERA, dtype=torch.long)
        ids = torch.as_tensor(camid, dtype=torch.long).reshape(-1)
        if ids.numel() == 1:
            ids = ids.expand(n).clone()
        if ids.numel() != n:
            raise MDReIDError(
                f"embed: camid has {ids.numel()} entries for {n} items; give one or one per item"
            )
        bad = (ids < NO_CAMERA) | (ids >= self.num_cameras)
        if bool(bad.any()):
            raise MDReIDError(
                f"embed: camid {int(ids[bad][0])} is not a camera of this model (0..{self.num_cameras - 1}); "
                f"use {NO_CAMERA} (or camid=None) for an image without a camera embedding"
            )
        return ids

    def preprocess(self, images: Sequence[ImageLike | None], where: str) -> list[Tensor | None]:
        """One item's R, N, T images (None where absent) as normalised ``[3, H, W]`` tensors."""
        present = [image is not None for image in images]
        pil = [
            to_pil(image, f"{where} {arg}", self.rule)
            for image, arg in zip(images, ARGUMENTS, strict=True)
            if image is not None
        ]
        tensors = iter(self.transform(pil))
        return [next(tensors) if p else None for p in present]

    def collate(self, rows: Sequence[Sequence[Tensor | None]]) -> tuple[dict[str, Tensor], Tensor]:
        """Preprocessed items as the network's input: ``[B, 3, H, W]`` per modality that any item has
        (zeros where an item lacks it) and the ``[B, 3]`` presence mask."""
        present = torch.tensor([[t is not None for t in row] for row in rows], dtype=torch.bool)
        zeros = torch.zeros(3, *self.image_size)
        images = {
            m: torch.stack([row[i] if row[i] is not None else zeros for row in rows])
            for i, m in enumerate(MODALITIES)
            if bool(present[:, i].any())
        }
        return images, present

    def _autocast(self) -> contextlib.AbstractContextManager:
        dtype = PRECISIONS[self.precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    @torch.inference_mode()
    def embed_batch(self, images: dict[str, Tensor], present: Tensor, camid: Tensor) -> dict[str, Tensor]:
        """Features of a collated batch: ``sp``, ``sh``, ``present`` and ``camid`` as ``Embeddings`` holds
        them."""
        move = {m: x.to(self.device) for m, x in images.items()}
        with self._autocast():
            out = extract(self.module.net, move, present.to(self.device), camid.to(self.device))
        return {**out, "present": present.cpu(), "camid": camid.cpu()}

    def _chunks(self, n: int) -> Iterator[range]:
        for start in range(0, n, self.batch_size):
            yield range(start, min(n, start + self.batch_size))

    def embed(
        self,
        rgb: Any = None,
        nir: Any = None,
        tir: Any = None,
        camid: int | Sequence[int] | Tensor | None = None,
    ) -> Embeddings:
        """Features of one item or a batch. Each modality is one image (a path, PIL image, numpy array or
        torch tensor; see ``mdreid.embed.inputs``) or a list of them with None where an item lacks it (a
        4-D array or tensor is a batch too). ``camid``: one id for all, one per item, or None for no camera
        embedding. Items are embedded ``batch_size`` at a time, in order."""
        items = self._items({"rgb": rgb, "nir": nir, "tir": tir})
        camids = self.camids(camid, len(items))
        parts = []
        for rows in self._chunks(len(items)):
            given = [[items[i].get(arg) for arg in ARGUMENTS] for i in rows]
            images, present = self.collate(
                [self.preprocess(g, f"item {i}") for i, g in zip(rows, given, strict=True)]
            )
            parts.append(self.embed_batch(images, present, camids[rows.start : rows.stop]))
        return Embeddings.cat([Embeddings.from_mapping(p, self.mode) for p in parts])
