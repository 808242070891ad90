"""The pretraining pool as a LightningDataModule: RGB crops of many identities, generic photometric and
geometric augmentation, every draw seeded by (seed, epoch, position) so batches do not depend on workers."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.transforms import v2

from mdreid.config.sections import plain, typed_section
from mdreid.data.synthetic.pool import PoolSpec, load_or_render
from mdreid.data.transforms import MEAN, STD, seeded_rngs
from mdreid.process.errors import MDReIDError

_AUG_STREAM = 0x5EED_0101  # separates the pool's augmentation seeds from every other stream


@dataclass(frozen=True)
class Augment:
    """Generic photo augmentation, as a CLIP-like pretraining sees: never a NIR or TIR rendering.

    The ``intensity`` views are the photometric curriculum: a view loses its colour through a random mix of
    its channels into one intensity (Dirichlet weights, so plain luma is one case among many), then a random
    gamma remaps the intensities (monotone: bright stays brighter, nothing is inverted). Colour-first: no such
    view before epoch ``intensity_from``, then a linearly growing share that reaches ``intensity`` at epoch
    ``intensity_full`` (0-based epochs). A batch then holds colour and intensity views of one identity as
    positives, so the features must carry what survives the loss of colour (shape, texture, brightness order).
    """

    crop_scale: tuple[float, float] = (0.5, 1.0)  # RandomResizedCrop area range
    flip: float = 0.5
    # brightness / contrast / saturation strength; no hue shift: colours are what tells identities apart
    jitter: float = 0.2
    grayscale: float = 0.1
    blur: float = 0.2  # probability of a Gaussian blur
    intensity: float = 0.0  # final probability of an intensity view; 0 = off (the shipped recipe)
    intensity_from: int = 0  # first epoch with intensity views
    intensity_full: int = 0  # epoch from which the probability is ``intensity``
    gamma: float = 1.0  # intensity views: gamma drawn log-uniformly in [1/gamma, gamma]; 1 = none

    def __post_init__(self) -> None:
        for key in ("flip", "grayscale", "blur", "intensity"):
            value = getattr(self, key)
            if not 0.0 <= value <= 1.0:
                raise MDReIDError(f"data.augment.{key}={value!r}: use a probability in [0, 1]")
        if not 0 <= self.intensity_from <= self.intensity_full:
            raise MDReIDError(
                f"data.augment.intensity_from={self.intensity_from} / intensity_full={self.intensity_full}: "
                "use 0 <= intensity_from <= intensity_full (epochs)"
            )
        if self.gamma < 1.0:
            raise MDReIDError(f"data.augment.gamma={self.gamma!r}: use a value >= 1 (1 = no remap)")

    def pipeline(self, size: int) -> v2.Compose:
        """Geometric and generic photometric steps, ending in float pixels in [0, 1] (not normalised)."""
        j = self.jitter
        return v2.Compose(
            [
                v2.ToImage(),
                v2.RandomResizedCrop(size, scale=tuple(self.crop_scale), antialias=True),
                v2.RandomHorizontalFlip(self.flip),
                v2.ColorJitter(j, j, j),
                v2.RandomGrayscale(self.grayscale),
                v2.RandomApply([v2.GaussianBlur(5, (0.1, 1.5))], p=self.blur),
                v2.ToDtype(torch.float32, scale=True),
            ]
        )

    def intensity_rate(self, epoch: int) -> float:
        """The share of intensity views at ``epoch`` (the curriculum)."""
        if epoch < self.intensity_from:
            return 0.0
        ramp = (epoch - self.intensity_from + 1) / (self.intensity_full - self.intensity_from + 1)
        return self.intensity * min(1.0, ramp)

    def intensity_view(self, image: torch.Tensor) -> torch.Tensor:
        """``image`` [3, H, W] in [0, 1] as one random channel mix, gamma-remapped, in all three channels;
        draws from torch's default generator (seeded per item by the caller)."""
        weights = -torch.log(torch.rand(3).clamp_min(1e-12))  # Dirichlet(1, 1, 1) up to the sum
        mixed = (weights / weights.sum()).view(3, 1, 1).mul(image).sum(0, keepdim=True).clamp(0.0, 1.0)
        gamma = self.gamma ** (2.0 * float(torch.rand(())) - 1.0)
        return mixed.pow(gamma).expand(3, -1, -1)


_NORMALIZE = v2.Normalize(MEAN, STD)


class IdentityOrder(Sampler):
    """P x K order: each epoch splits every identity's images into shuffled runs of K and shuffles the runs,
    so a batch of P*K items holds P runs of K views (the positives a contrastive loss needs; two runs of
    one identity may meet in a batch). Yields (epoch, position, index); Lightning calls ``set_epoch``."""

    def __init__(self, labels: np.ndarray, k: int, seed: int) -> None:
        self.by_id = [np.flatnonzero(labels == i) for i in np.unique(labels)]
        if min(len(v) for v in self.by_id) < k:
            raise MDReIDError(f"data.num_instances={k} exceeds the images of an identity (data.pool.per_id)")
        self.k, self.seed, self.epoch = k, seed, 0
        self.n = sum(len(v) // k * k for v in self.by_id)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        rng = np.random.default_rng([self.seed, _AUG_STREAM, self.epoch])
        runs = [
            chunk
            for v in self.by_id
            for chunk in rng.permutation(v)[: len(v) // self.k * self.k].reshape(-1, self.k)
        ]
        order = np.concatenate([runs[i] for i in rng.permutation(len(runs))])
        return iter((self.epoch, pos, int(i)) for pos, i in enumerate(order))


class PoolDataset(Dataset):
    def __init__(self, images: np.ndarray, labels: np.ndarray, augment: Augment, seed: int) -> None:
        self.images, self.labels, self.seed, self.augment = images, labels, seed, augment
        self.transform = augment.pipeline(images.shape[1])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, draw: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, position, index = draw
        seed = int(np.random.SeedSequence([self.seed, _AUG_STREAM, epoch, position]).generate_state(1)[0])
        with seeded_rngs(seed):
            image = self.transform(self.images[index])
            if float(torch.rand(())) < self.augment.intensity_rate(epoch):
                image = self.augment.intensity_view(image)
        return _NORMALIZE(image), torch.tensor(self.labels[index])


class PoolDataModule(L.LightningDataModule):
    """Renders the pool once into ``cache_dir`` (atomically), then serves shuffled augmented batches."""

    def __init__(
        self,
        pool: Mapping[str, Any],
        cache_dir: str,
        batch_size: int = 64,
        num_instances: int = 4,
        num_workers: int = 1,
        render_processes: int = 2,
        augment: Mapping[str, Any] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.spec = typed_section(PoolSpec, plain(pool), "data.pool")
        for key, value in (("data.batch_size", batch_size), ("data.num_workers", num_workers)):
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or value < (1 if key == "data.batch_size" else 0)
            ):
                raise MDReIDError(
                    f"{key}={value!r}: use a {'positive' if key == 'data.batch_size' else 'non-negative'} integer"
                )
        self.augment = typed_section(Augment, plain(augment), "data.augment")
        if num_instances < 2 or batch_size % num_instances:
            raise MDReIDError(
                f"data.num_instances={num_instances} must be >= 2 and divide data.batch_size={batch_size}"
            )
        self.cache_dir, self.batch_size, self.num_workers = cache_dir, batch_size, num_workers
        self.num_instances = num_instances
        self.render_processes, self.seed = render_processes, seed
        self.dataset: PoolDataset | None = None

    def prepare_data(self) -> None:
        load_or_render(self.spec, self.cache_dir, self.render_processes)

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is None:
            images, labels = load_or_render(self.spec, self.cache_dir, self.render_processes)
            self.dataset = PoolDataset(images, labels, self.augment, self.seed)

    def train_dataloader(self) -> DataLoader:
        assert self.dataset is not None
        return DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=IdentityOrder(self.dataset.labels, self.num_instances, self.seed),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            drop_last=True,
        )
