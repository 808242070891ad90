"""Image transforms of one R/N/T triplet: the official train and test pipelines (docs/method.md §4.1).

Train: Resize (bicubic) -> RandomHorizontalFlip(0.5) -> Pad(10) -> RandomCrop -> ToTensor ->
Normalize(0.5, 0.5) -> timm RandomErasing(mode='pixel', one box). Test: Resize (bilinear) -> ToTensor ->
Normalize. The official code runs the pipeline once per modality, so flip, crop and erase box differ between
R, N and T (the default). With ``sync=True`` the modalities are transformed jointly: torchvision v2 draws one
flip and one crop for all images of a call, and the erase box is drawn once on the channel-stacked triplet
(its pixel noise still differs per channel).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from PIL import Image
from timm.data.random_erasing import RandomErasing
from torchvision.transforms import v2

from mdreid.process.errors import MDReIDError

MEAN = STD = (0.5, 0.5, 0.5)  # the ViT/CLIP lineage's normalisation, not CLIP's own statistics
PAD = 10


@contextmanager
def seeded_rngs(seed: int) -> Iterator[None]:
    """Seed torch's CPU generator and Python's ``random`` (what torchvision and timm draw from) for a block,
    restoring both afterwards so the caller's streams (e.g. the main process with num_workers=0) are untouched.
    """
    state = random.getstate()
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        random.seed(seed)
        try:
            yield
        finally:
            random.setstate(state)


def check_image_size(image_size: Sequence[int]) -> tuple[int, int]:
    """``data.image_size`` as an (H, W) tuple of positive ints."""
    size = tuple(int(v) for v in image_size)
    if len(size) != 2 or min(size) < 1:
        raise MDReIDError(f"data.image_size={list(image_size)} must be [height, width], e.g. [256, 128]")
    return size  # type: ignore[return-value]


def check_random_erasing(probability: float) -> float:
    """``data.random_erasing``, if it is a probability."""
    if not 0.0 <= probability <= 1.0:
        raise MDReIDError(f"data.random_erasing={probability} must be a probability in [0, 1]")
    return probability


class TripletTransform:
    """Maps the present modality images of one triplet (PIL, any size) to normalised [3, H, W] tensors."""

    def __init__(
        self, image_size: Sequence[int], train: bool, random_erasing: float = 0.5, sync: bool = False
    ) -> None:
        self.size = check_image_size(image_size)
        check_random_erasing(random_erasing)
        if train:
            self.geometric = v2.Compose(
                [
                    v2.Resize(self.size, interpolation=v2.InterpolationMode.BICUBIC),
                    v2.RandomHorizontalFlip(0.5),
                    v2.Pad(PAD),
                    v2.RandomCrop(self.size),
                ]
            )
        else:
            self.geometric = v2.Resize(self.size, interpolation=v2.InterpolationMode.BILINEAR)
        self.to_tensor = v2.Compose(
            [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)]
        )
        self.erase = (
            RandomErasing(probability=random_erasing, mode="pixel", max_count=1, device="cpu")
            if train and random_erasing > 0
            else None
        )
        self.sync = sync

    def _apply(self, images: Sequence[Image.Image]) -> list[torch.Tensor]:
        if self.sync:  # one call: v2 draws a single flip/crop for every image in it
            tensors = [self.to_tensor(img) for img in self.geometric(list(images))]
        else:
            tensors = [self.to_tensor(self.geometric(img)) for img in images]
        if self.erase is None:
            return tensors
        if self.sync:  # one erase box through all 3M channels
            return list(self.erase(torch.cat(tensors)).split(3))
        return [self.erase(t) for t in tensors]

    def __call__(self, images: Sequence[Image.Image], seed: int | None = None) -> list[torch.Tensor]:
        """Transform ``images``; with ``seed`` the random draws are a pure function of it."""
        if seed is None:
            return self._apply(images)
        with seeded_rngs(seed):
            return self._apply(images)
