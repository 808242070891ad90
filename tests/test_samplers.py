"""PK sampler (official composition, DDP split), evaluation shards and seeded modality dropout."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from mdreid.data.dist_ranks import rank_and_world
from mdreid.data.modality_dropout import ALL_PRESENT, ModalityDropout, marginal_drop_rate
from mdreid.data.pk_sampler import PKSampler, pk_round
from mdreid.data.shard_sampler import ShardSampler
from mdreid.process.errors import MDReIDError

# 10 identities: sizes 2 (< K, resampled), 4, 5, 7, 8, 9 ... so chunk counts differ between identities
SIZES = [2, 4, 5, 7, 8, 9, 12, 3, 6, 10]
PIDS = [pid for pid, n in zip(range(100, 110), SIZES, strict=True) for _ in range(n)]
K = 4


def draws(sampler: PKSampler, epoch: int = 0) -> list:
    sampler.set_epoch(epoch)
    return list(sampler)


def batches(sampler: PKSampler, epoch: int = 0) -> list[list]:
    items = draws(sampler, epoch)
    step = sampler.per_rank_batch
    return [items[i : i + step] for i in range(0, len(items), step)]


def test_pk_batches_hold_p_identities_times_k_contiguous_instances() -> None:
    sampler = PKSampler(PIDS, batch_size=16, num_instances=K, seed=3, rank=0, world_size=1)
    out = batches(sampler)
    assert out and all(len(b) == 16 for b in out)
    for batch in out:
        pids = [PIDS[d.index] for d in batch]
        chunks = [pids[i : i + K] for i in range(0, 16, K)]
        assert all(len(set(c)) == 1 for c in chunks)  # each chunk is one identity
        assert len({c[0] for c in chunks}) == 4  # P = 16 / 4 distinct identities


def test_a_round_follows_the_official_chunking() -> None:
    for seed in range(5):
        items = pk_round(PIDS, K, 2, np.random.default_rng(seed))
        counts = Counter(PIDS[i] for i in items)
        full = {pid: max(n, K) // K * K for pid, n in zip(range(100, 110), SIZES, strict=True)}
        assert all(counts[pid] % K == 0 and counts[pid] <= full[pid] for pid in full)
        big = [i for i in items if SIZES[PIDS[i] - 100] >= K]
        assert len(big) == len(set(big))  # identities with >= K images are drawn without replacement
        assert sum(counts[pid] < full[pid] for pid in full) < 2  # stops when fewer than P = 2 have chunks


def test_every_epoch_has_the_official_declared_length() -> None:
    sampler = PKSampler(PIDS, batch_size=12, num_instances=K, seed=0, rank=0, world_size=1)
    chunks = sum(max(n, K) // K for n in SIZES)  # 16 chunks -> floor(16 / 3) = 5 batches of 12
    assert sampler.num_batches == chunks // 3 == 5
    lengths = {len(draws(sampler, epoch)) for epoch in range(20)}
    assert lengths == {len(sampler)} == {5 * 12}


def test_small_identity_is_resampled_with_replacement_up_to_k() -> None:
    pids = [7, 7] + [8] * 4 + [9] * 4
    sampler = PKSampler(pids, batch_size=12, num_instances=K, seed=1, rank=0, world_size=1)
    items = [d.index for d in draws(sampler)]
    small = [i for i in items if pids[i] == 7]
    assert len(small) == K and set(small) <= {0, 1}  # K draws from its 2 images, so repeats


def test_ranks_split_each_global_batch_into_disjoint_whole_identities() -> None:
    whole = batches(PKSampler(PIDS, batch_size=16, num_instances=K, seed=5, rank=0, world_size=1), epoch=2)
    ranks = [PKSampler(PIDS, batch_size=16, num_instances=K, seed=5, rank=r, world_size=2) for r in range(2)]
    per_rank = [batches(s, epoch=2) for s in ranks]
    assert len(ranks[0]) == len(ranks[1]) == len(draws(ranks[0], 2))
    assert len(per_rank[0]) == len(per_rank[1]) == len(whole)
    for step, (b0, b1) in enumerate(zip(*per_rank, strict=True)):
        assert len(b0) == len(b1) == 8  # per-rank batch = global 16 / 2
        assert b0 + b1 == whole[step]  # rank r holds group r of the global batch, in order
        assert not {PIDS[d.index] for d in b0} & {PIDS[d.index] for d in b1}
        assert {d.batch for d in b0 + b1} == {step}
    positions = sorted(d.position for b in per_rank for batch in b for d in batch)
    assert positions == list(range(len(whole) * 16))


def test_order_is_fixed_by_seed_and_epoch() -> None:
    a = PKSampler(PIDS, batch_size=8, num_instances=K, seed=9, rank=0, world_size=1)
    b = PKSampler(PIDS, batch_size=8, num_instances=K, seed=9, rank=0, world_size=1)
    assert draws(a, 1) == draws(b, 1)
    assert [d.index for d in draws(a, 1)] != [d.index for d in draws(a, 2)]
    c = PKSampler(PIDS, batch_size=8, num_instances=K, seed=10, rank=0, world_size=1)
    assert [d.index for d in draws(a, 1)] != [d.index for d in draws(c, 1)]


@pytest.mark.parametrize(
    ("batch_size", "num_instances", "world_size", "key"),
    [(10, 4, 1, "data.batch_size=10"), (12, 4, 2, "P=3"), (48, 4, 1, "has 10 identities")],
)
def test_pk_sampler_rejects_bad_batch_shapes(
    batch_size: int, num_instances: int, world_size: int, key: str
) -> None:
    with pytest.raises(MDReIDError, match=key):
        PKSampler(PIDS, batch_size, num_instances, rank=0, world_size=world_size)


@pytest.mark.parametrize(("n", "world"), [(7, 3), (10, 2), (2, 4), (0, 2), (5, 1)])
def test_shards_are_contiguous_and_cover_every_item_once(n: int, world: int) -> None:
    shards = [list(ShardSampler(n, rank=r, world_size=world)) for r in range(world)]
    assert [i for s in shards for i in s] == list(range(n))  # rank-major concatenation is the listing
    assert [len(ShardSampler(n, rank=r, world_size=world)) for r in range(world)] == [len(s) for s in shards]
    assert all(s == list(range(s[0], s[0] + len(s))) for s in shards if s)
    assert max(map(len, shards)) == -(-n // world)


def test_rank_and_world_defaults_to_a_single_process() -> None:
    assert rank_and_world() == (0, 1)
    assert rank_and_world(1, 4) == (1, 4)
    with pytest.raises(ValueError):
        rank_and_world(2, 2)


def test_dropout_marginal_rate_and_never_all_three() -> None:
    p = 0.5
    dropout = ModalityDropout(p=p, mode="sample", seed=0)
    masks = np.array([dropout.presence(0, pos, pos // 8) for pos in range(6000)])
    assert masks.any(axis=1).all()
    rates = 1 - masks.mean(axis=0)
    assert marginal_drop_rate(p) == pytest.approx(3 / 7)
    assert np.abs(rates - marginal_drop_rate(p)).max() < 0.03
    assert (masks.sum(axis=1) == 1).mean() == pytest.approx(3 * p * p * (1 - p) / (1 - p**3), abs=0.03)


def test_dropout_is_seeded_and_batch_mode_shares_one_mask_per_batch() -> None:
    sample = ModalityDropout(p=0.6, mode="sample", seed=4)
    assert [sample.presence(1, i, 0) for i in range(50)] == [sample.presence(1, i, 0) for i in range(50)]
    assert [sample.presence(1, i, 0) for i in range(50)] != [sample.presence(2, i, 0) for i in range(50)]
    assert len({sample.presence(1, i, 0) for i in range(50)}) > 1
    batch = ModalityDropout(p=0.6, mode="batch", seed=4)
    per_batch = [{batch.presence(0, pos, b) for pos in range(b * 8, b * 8 + 8)} for b in range(40)]
    assert all(len(s) == 1 for s in per_batch)
    assert len({next(iter(s)) for s in per_batch}) > 1  # but batches differ


def test_dropout_off_and_bad_config() -> None:
    off = ModalityDropout.from_config(None, seed=0)
    assert all(off.presence(0, i, i) == ALL_PRESENT for i in range(20))
    assert ModalityDropout.from_config({"p": 0.0, "mode": "batch"}, seed=0).presence(0, 1, 1) == ALL_PRESENT
    with pytest.raises(MDReIDError, match="data.modality_dropout.p"):
        ModalityDropout.from_config({"p": 1.0}, seed=0)
    with pytest.raises(MDReIDError, match="data.modality_dropout.mode"):
        ModalityDropout.from_config({"p": 0.2, "mode": "step"}, seed=0)
    with pytest.raises(MDReIDError, match="unknown key"):
        ModalityDropout.from_config({"prob": 0.2}, seed=0)
