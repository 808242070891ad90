"""Identity-balanced P x K sampling (the official ``RandomIdentitySampler``), correct under DDP.

Every rank regenerates the same global stream from ``(seed, epoch)`` and keeps only its share: each global
batch of P identities x K instances is split into ``world_size`` groups of P / world_size whole identities,
and rank r yields group r. Whole identities stay on one rank, so every rank's triplet loss sees complete
K-instance positives, and all ranks have the same number of batches.

The official loop stops when fewer than P identities have chunks left, so its epoch length varies
(RGBNT100: 130..132 batches). Lightning fixes the number of batches from the first epoch and skips the
end-of-epoch validation of a shorter one, so every epoch here has exactly the official sampler's declared
length, floor(sum_pid floor(max(n, K) / K) / P) batches: when a round of the official loop ends short, a
new round (new shuffles) continues the epoch, and the stream is cut at that length.

The sampler is a plain index ``Sampler`` with ``set_epoch`` because Lightning calls ``set_epoch`` on
``loader.sampler`` only; wrap it in a ``DataLoader(batch_size=per_rank_batch, drop_last=True)``. It yields
``Draw`` keys rather than bare indices: each carries the draw's place in the global stream, from which the
dataset seeds augmentation and modality dropout (so results do not depend on the number of workers, which
hold stale copies of the dataset, nor on how many ranks share the batch).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
from torch.utils.data import Sampler

from mdreid.data.dist_ranks import rank_and_world
from mdreid.process.errors import MDReIDError

_STREAM = 0x5EED_0001  # separates the sampler's random stream from the dataset's ones


class Draw(NamedTuple):
    """One sampled training item: which record, and where it sits in the epoch's global stream."""

    index: int  # position in the training records
    epoch: int
    position: int  # 0.. over the global stream (all ranks), identical for any world size
    batch: int  # global batch (optimizer step) number within the epoch


def pk_round(pids: Sequence[int], num_instances: int, num_pids: int, rng: np.random.Generator) -> list[int]:
    """One official epoch (a "round" here), as a flat list of record indices in global-batch order.

    Per identity: shuffle its indices (fewer than K are first resampled with replacement up to K), cut into
    chunks of K and drop the remainder. Then repeatedly draw ``num_pids`` distinct identities among those
    with chunks left and emit one chunk of each, until fewer than ``num_pids`` identities remain.
    """
    by_pid: dict[int, list[int]] = defaultdict(list)
    for index, pid in enumerate(pids):
        by_pid[pid].append(index)
    chunks: dict[int, list[np.ndarray]] = {}
    for pid in sorted(by_pid):
        idxs = np.asarray(by_pid[pid])
        if len(idxs) < num_instances:
            idxs = rng.choice(idxs, size=num_instances, replace=True)
        idxs = rng.permutation(idxs)
        usable = len(idxs) // num_instances * num_instances
        chunks[pid] = list(idxs[:usable].reshape(-1, num_instances))
    available = sorted(chunks)
    stream: list[int] = []
    while len(available) >= num_pids:
        for pid in rng.choice(available, size=num_pids, replace=False).tolist():
            stream.extend(chunks[pid].pop(0).tolist())
            if not chunks[pid]:
                available.remove(pid)
    return stream


def check_pk_batch(batch_size: int, num_instances: int) -> int:
    """``batch_size``, if it is P x K identities x instances (``data.batch_size``, ``data.num_instances``)."""
    ok = all(isinstance(v, int) and not isinstance(v, bool) for v in (batch_size, num_instances))
    if not ok or num_instances < 1 or batch_size < num_instances or batch_size % num_instances:
        raise MDReIDError(
            f"data.batch_size={batch_size} must be a positive multiple of data.num_instances={num_instances}"
        )
    return batch_size


class PKSampler(Sampler[Draw]):
    """P identities x K instances per global batch; this rank's whole-identity share of each batch.

    ``batch_size`` is GLOBAL (triplets per optimizer step over all ranks): P = batch_size // num_instances,
    and each rank receives ``per_rank_batch = batch_size // world_size`` draws per step.
    """

    def __init__(
        self,
        pids: Sequence[int],
        batch_size: int,
        num_instances: int,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        self.rank, self.world_size = rank_and_world(rank, world_size)
        self.num_pids = check_pk_batch(batch_size, num_instances) // num_instances
        if self.num_pids % self.world_size:
            raise MDReIDError(
                f"data.batch_size={batch_size} gives P={self.num_pids} identities per step, which cannot be split "
                f"into {self.world_size} devices: make batch_size // num_instances a multiple of the device count"
            )
        distinct = len(set(pids))
        if distinct < self.num_pids:
            raise MDReIDError(
                f"the training split has {distinct} identities but data.batch_size={batch_size} needs "
                f"P={self.num_pids} per step: lower data.batch_size or raise data.num_instances"
            )
        self.pids = list(pids)
        self.num_instances = num_instances
        self.batch_size = batch_size
        self.per_rank_batch = batch_size // self.world_size
        chunks = sum(max(n, num_instances) // num_instances for n in Counter(self.pids).values())
        self.num_batches = chunks // self.num_pids  # global batches per epoch, >= 1 since distinct >= P
        self.seed = seed
        self.epoch = 0
        self._cache: tuple[int, list[int]] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning before each epoch: a new, rank-consistent order."""
        self.epoch = epoch

    def _stream(self) -> list[int]:
        """The epoch's global stream: rounds of the official loop, cut at ``num_batches`` batches."""
        if self._cache is None or self._cache[0] != self.epoch:
            rng = np.random.default_rng([self.seed, _STREAM, self.epoch])
            length = self.num_batches * self.batch_size
            stream: list[int] = []
            while len(stream) < length:  # each round yields >= 1 batch: every identity starts with a chunk
                stream.extend(pk_round(self.pids, self.num_instances, self.num_pids, rng))
            self._cache = (self.epoch, stream[:length])
        return self._cache[1]

    def __iter__(self) -> Iterator[Draw]:
        stream = self._stream()
        share = self.per_rank_batch
        for batch, start in enumerate(range(0, len(stream), self.batch_size)):
            first = start + self.rank * share
            for position in range(first, first + share):
                yield Draw(stream[position], self.epoch, position, batch)

    def __len__(self) -> int:
        return self.num_batches * self.per_rank_batch
