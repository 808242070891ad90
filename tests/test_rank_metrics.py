"""rank_metrics against an independent per-query loop, hand-computed cases, ties, +inf and errors."""

from __future__ import annotations

import math
import os
import signal
import time

import numpy as np
import pytest
import torch

from mdreid.metrics import rank_metrics
from mdreid.metrics.functional import query_rank_stats, rank_workspace, sort_rows_
from mdreid.process.errors import MDReIDError


def loop_reference(dist, q_pids, g_pids, q_groups, g_groups, max_rank):
    """torchreid-style evaluation, one query at a time, with +inf entries dropped like junk.

    CMC rows shorter than max_rank (few valid gallery items) carry their last value to the end.
    Returns (mAP, mINP, cmc, num_valid, per-query AP with NaN for skipped queries).
    """
    order = np.argsort(dist, axis=1, kind="stable")
    aps, inps, cmcs, per_query = [], [], [], np.full(dist.shape[0], np.nan)
    for i in range(dist.shape[0]):
        ranked = order[i]
        junk = (g_pids[ranked] == q_pids[i]) & (g_groups[ranked] == q_groups[i])
        keep = ~junk & np.isfinite(dist[i, ranked])
        hits = (g_pids[ranked][keep] == q_pids[i]).astype(np.float64)
        if hits.sum() == 0:
            continue
        cum = hits.cumsum()
        last = np.flatnonzero(hits).max()
        inps.append(cum[last] / (last + 1.0))
        cmc = np.minimum(cum, 1.0)
        if cmc.size < max_rank:
            cmc = np.concatenate([cmc, np.full(max_rank - cmc.size, cmc[-1])])
        cmcs.append(cmc[:max_rank])
        precision = cum / np.arange(1, hits.size + 1)
        per_query[i] = (precision * hits).sum() / hits.sum()
        aps.append(per_query[i])
    return np.mean(aps), np.mean(inps), np.mean(cmcs, axis=0), len(aps), per_query


def random_case(seed: int, num_q: int = 13, num_g: int = 40, inf_fraction: float = 0.1):
    rng = np.random.default_rng(seed)
    dist = rng.random((num_q, num_g)).astype(np.float32)
    dist[rng.random((num_q, num_g)) < inf_fraction] = np.inf
    q_pids, g_pids = rng.integers(0, 5, num_q), rng.integers(0, 5, num_g)
    q_groups, g_groups = rng.integers(0, 3, num_q), rng.integers(0, 3, num_g)
    return dist, q_pids, g_pids, q_groups, g_groups


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("max_rank,chunk_size", [(50, None), (5, 4), (10, 1)])
def test_matches_reference_loop(seed, max_rank, chunk_size):
    case = random_case(seed)
    ref_map, ref_minp, ref_cmc, ref_valid, ref_ap = loop_reference(*case, max_rank)
    out = rank_metrics(
        *(torch.from_numpy(a) for a in case), max_rank=max_rank, chunk_size=chunk_size, return_per_query=True
    )
    assert out["num_valid"] == ref_valid
    assert out["mAP"] == pytest.approx(ref_map, abs=1e-6)
    assert out["mINP"] == pytest.approx(ref_minp, abs=1e-6)
    assert out["cmc"].shape == (max_rank,)
    np.testing.assert_allclose(out["cmc"].numpy(), ref_cmc, atol=1e-6, rtol=0)
    np.testing.assert_allclose(out["ap"].numpy(), ref_ap, atol=1e-6, rtol=0)  # NaN where skipped, both sides
    assert out["valid"].numpy().tolist() == (~np.isnan(ref_ap)).tolist()


def test_hand_made_ap_cmc_minp_with_junk():
    # ranked gallery: hit, junk (same pid & camera: removed), miss, hit, miss
    dist = torch.tensor([[0.1, 0.15, 0.2, 0.3, 0.4]])
    g_pids = torch.tensor([7, 7, 1, 7, 2])
    g_cams = torch.tensor([1, 0, 1, 2, 1])
    out = rank_metrics(dist, torch.tensor([7]), g_pids, torch.tensor([0]), g_cams, max_rank=10)
    assert out["mAP"] == pytest.approx((1 + 2 / 3) / 2)
    assert out["mINP"] == pytest.approx(2 / 3)  # 2 positives, the last at rank 3
    assert out["cmc"].tolist() == [1.0] * 10  # 4 valid items, padded with the last value
    assert out["num_valid"] == 1


def test_first_hit_position_sets_cmc():
    dist = torch.tensor([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]])
    g_pids = torch.tensor([0, 1, 2])
    out = rank_metrics(
        dist, torch.tensor([2, 2]), g_pids, torch.tensor([0, 0]), torch.tensor([1, 1, 1]), max_rank=4
    )
    # query 0 finds pid 2 at rank 3, query 1 at rank 1
    assert out["cmc"].tolist() == [0.5, 0.5, 1.0, 1.0]
    assert out["mAP"] == pytest.approx((1 / 3 + 1) / 2)


def test_ties_rank_negatives_first_whatever_the_order():
    """Pessimistic, order-free tie rule: a negative tied with a positive ranks before it."""
    g_pids = torch.tensor([0, 5, 1, 5])
    for perm in (torch.arange(4), torch.tensor([1, 3, 0, 2]), torch.tensor([3, 2, 1, 0])):
        out = rank_metrics(
            torch.zeros(1, 4), torch.tensor([5]), g_pids[perm], torch.tensor([0]), torch.ones(4).long()
        )
        assert out["mAP"] == pytest.approx((1 / 3 + 2 / 4) / 2)
        assert out["mINP"] == pytest.approx(2 / 4)
        assert out["cmc"][:3].tolist() == [0.0, 0.0, 1.0]


def test_partial_ties_between_positive_and_negative():
    dist = torch.tensor([[0.1, 0.5, 0.5, 0.9]])  # pid:   5, 1, 5, 5  -> ranks of positives 1, 3, 4
    out = rank_metrics(
        dist, torch.tensor([5]), torch.tensor([5, 1, 5, 5]), torch.tensor([0]), torch.ones(4).long()
    )
    assert out["mAP"] == pytest.approx((1 / 1 + 2 / 3 + 3 / 4) / 3)


def test_inf_entries_are_excluded_like_junk():
    dist = torch.tensor([[math.inf, 0.5, 0.6]])
    args = (torch.tensor([3]), torch.tensor([3, 1, 3]), torch.tensor([0]), torch.tensor([1, 1, 1]))
    out = rank_metrics(dist, *args)
    assert out["mAP"] == pytest.approx(1 / 2)  # the nearer positive is absent; the other is 2nd of 2
    assert out["mINP"] == pytest.approx(1 / 2)


def test_queries_without_positive_are_skipped_and_all_skipped_raises():
    dist = torch.rand(2, 3)
    g_pids, g_cams = torch.tensor([0, 0, 1]), torch.tensor([0, 1, 0])
    out = rank_metrics(dist, torch.tensor([0, 9]), g_pids, torch.tensor([0, 0]), g_cams)
    assert out["num_valid"] == 1
    with pytest.raises(MDReIDError, match="no query has a valid positive"):
        # every positive shares the query's camera: all junk
        rank_metrics(
            dist[:1, :2], torch.tensor([0]), torch.tensor([0, 0]), torch.tensor([1]), torch.tensor([1, 1])
        )


def test_bad_inputs_raise():
    ids = torch.zeros(2, dtype=torch.long)
    with pytest.raises(MDReIDError, match="g_pids"):
        rank_metrics(torch.rand(2, 3), ids, ids, ids, torch.zeros(3, dtype=torch.long))
    with pytest.raises(MDReIDError, match="NaN"):
        rank_metrics(torch.full((2, 2), math.nan), ids, ids, ids, ids)


def test_row_without_positive_does_not_disturb_its_neighbours():
    """Rows are scored in one batched search; a skipped row with far negatives must not leak into the next."""
    dist = torch.tensor([[50.0, 80.0, 99.0], [0.2, 0.1, 0.3]])
    q_pids, g_pids = torch.tensor([7, 1]), torch.tensor([1, 2, 1])
    out = rank_metrics(dist, q_pids, g_pids, torch.tensor([0, 0]), torch.ones(3).long(), chunk_size=2)
    assert out["num_valid"] == 1
    assert out["mAP"] == pytest.approx((1 / 2 + 2 / 3) / 2)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_threaded_cpu_sort_matches_reference_loop(threads):
    """Enough rows for ``sort_rows`` to split the chunk over threads; a bad block boundary changes numbers."""
    case = random_case(7, num_q=203, num_g=61, inf_fraction=0.05)
    ref_map, ref_minp, ref_cmc, ref_valid, ref_ap = loop_reference(*case, 20)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = rank_metrics(*(torch.from_numpy(a) for a in case), max_rank=20, return_per_query=True)
    finally:
        torch.set_num_threads(previous)
    assert out["num_valid"] == ref_valid
    np.testing.assert_allclose(out["ap"].numpy(), ref_ap, atol=1e-6, rtol=0)
    assert out["mINP"] == pytest.approx(ref_minp, abs=1e-6)
    np.testing.assert_allclose(out["cmc"].numpy(), ref_cmc, atol=1e-6, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_any_float_dtype_gives_the_float32_numbers(dtype):
    case = random_case(3, num_q=40, num_g=50)
    dist = torch.from_numpy(case[0]).to(dtype)  # values already rounded to dtype: the two must agree
    ids = [torch.from_numpy(a) for a in case[1:]]
    expected = rank_metrics(dist.float(), *ids)
    out = rank_metrics(dist, *ids)
    assert out["mAP"] == pytest.approx(expected["mAP"], abs=1e-12)
    assert out["cmc"].tolist() == expected["cmc"].tolist()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_threaded_sort_works_in_a_forked_child():
    """The sort threads are per process: a child forked after the parent used them must not hang. (The
    child runs only ``sort_rows_``: torch's own OpenMP pool is not fork-safe, which is torch's matter.)"""
    rows = np.random.default_rng(0).random((256, 50)).astype(np.float32)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        sort_rows_(torch.from_numpy(rows.copy()))  # the parent's pool now exists
        pid = os.fork()
        if pid == 0:  # child: exit 0 only if the rows come back sorted
            got = sort_rows_(torch.from_numpy(rows.copy())).numpy()
            os._exit(0 if np.array_equal(got, np.sort(rows, axis=1)) else 1)
        deadline = time.monotonic() + 30
        while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        if done[0] == 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        assert done[0] == pid and os.waitstatus_to_exitcode(done[1]) == 0, "the forked child hung or failed"
    finally:
        torch.set_num_threads(previous)


def test_a_workspace_that_does_not_fit_is_an_error():
    dist = torch.rand(4, 6, dtype=torch.float64)
    pids, g_pids = torch.zeros(4, dtype=torch.long), torch.zeros(6, dtype=torch.long)
    args = (dist, pids, g_pids, pids, g_pids + 1)  # one identity, other cameras: every item a positive
    with pytest.raises(MDReIDError, match="workspace"):
        query_rank_stats(*args, workspace=rank_workspace(4, 6, torch.float32, dist.device))  # would round
    with pytest.raises(MDReIDError, match="workspace"):
        query_rank_stats(*args, workspace=rank_workspace(3, 6, torch.float64, dist.device))  # too few rows
    bigger = rank_workspace(9, 6, torch.float64, dist.device)  # more rows than the chunk: fine
    assert query_rank_stats(*args, workspace=bigger).valid.all()
