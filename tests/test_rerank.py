"""k-reciprocal re-ranking: the sparse, blocked implementation against a plain dense one written from the paper."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mdreid.metrics import rerank as rerank_module
from mdreid.metrics.rerank import RerankSettings, k_reciprocal_rerank, rerank_row_blocks
from mdreid.process.errors import MDReIDError


def paper_rerank(q_g, q_q, g_g, k1=20, k2=6, lam=0.3):
    """Zhong et al. 2017 spelled out with dense N x N arrays and Python sets, float64 throughout."""
    q_g, q_q, g_g = (np.asarray(x, dtype=np.float64) for x in (q_g, q_q, g_g))
    nq = q_g.shape[0]
    full = np.block([[q_q, q_g], [q_g.T, g_g]])
    n = full.shape[0]
    squared = full**2
    t = (squared / squared.max(axis=0, keepdims=True)).T  # column i scaled by its max, as row i
    order = np.argsort(t, axis=1, kind="stable")  # ties: lower index first

    def near(i, k):
        return set(order[i, : min(k, n)].tolist())

    def reciprocal(i, k):
        return {j for j in near(i, k) if i in near(j, k)}

    half = int(round(k1 / 2)) + 1
    v = np.zeros((n, n))
    for i in range(n):
        base = reciprocal(i, k1 + 1)
        expanded = set(base)
        for c in base:
            cand = reciprocal(c, half)
            if len(cand & base) > 2.0 / 3.0 * len(cand):
                expanded |= cand
        members = sorted(expanded)
        w = np.exp(-t[i, members])
        v[i, members] = w / w.sum()
    if k2 != 1:
        v = np.stack([v[order[i, : min(k2, n)]].mean(axis=0) for i in range(n)])
    jaccard = np.empty((nq, n))
    for i in range(nq):
        s = np.minimum(v[i][None, :], v).sum(axis=1)
        jaccard[i] = 1 - s / (2 - s)
    final = (1 - lam) * jaccard + lam * t[:nq]
    return final[:, nq:]


def euclidean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cdist(a, b)


def clustered(num_q: int, num_g: int, seed: int, dim: int = 16, ids: int = 6) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    centers = torch.randn(ids, dim, generator=gen, dtype=torch.float64)
    pid = torch.randint(0, ids, (num_q + num_g,), generator=gen)
    x = centers[pid] + 0.7 * torch.randn(num_q + num_g, dim, generator=gen, dtype=torch.float64)
    q, g = x[:num_q], x[num_q:]
    return euclidean(q, g), euclidean(q, q), euclidean(g, g)


@pytest.mark.parametrize(
    ("num_q", "num_g", "k1", "k2", "lam", "seed"),
    [
        (13, 41, 20, 6, 0.3, 0),  # the paper's defaults, k1 + 1 > half of the items
        (20, 60, 5, 3, 0.5, 1),  # odd k1: round(2.5) = 2
        (9, 30, 7, 1, 0.0, 2),  # no query expansion, Jaccard only
        (1, 25, 4, 2, 1.0, 3),  # single query; lambda 1 leaves only the scaled distances
        (5, 12, 40, 20, 0.3, 4),  # k1 and k2 larger than Q + G
    ],
)
def test_equals_the_dense_paper_algorithm(num_q, num_g, k1, k2, lam, seed) -> None:
    q_g, q_q, g_g = clustered(num_q, num_g, seed)
    ours = k_reciprocal_rerank(q_g, q_q, g_g, k1=k1, k2=k2, lambda_value=lam)
    ref = paper_rerank(q_g, q_q, g_g, k1, k2, lam)
    assert ours.shape == (num_q, num_g) and ours.dtype == torch.float64
    np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-6)


def test_ties_are_broken_by_index_like_a_stable_sort() -> None:
    """Integer distances on a small grid: many exact ties inside and at the edge of every neighbour set."""
    gen = torch.Generator().manual_seed(5)
    pts = torch.randint(0, 3, (30, 2), generator=gen).double()
    d = torch.cdist(pts, pts, p=1) + 1.0 - torch.eye(30, dtype=torch.float64)  # no zero row
    q_g, q_q, g_g = d[:8, 8:], d[:8, :8], d[8:, 8:]
    ours = k_reciprocal_rerank(q_g, q_q, g_g, k1=6, k2=3, lambda_value=0.3)
    np.testing.assert_allclose(ours.numpy(), paper_rerank(q_g, q_q, g_g, 6, 3, 0.3), rtol=0, atol=1e-6)


def test_float32_blocks_and_small_budgets_give_the_same_result(monkeypatch) -> None:
    """Row blocks of a few rows and a tiny Jaccard budget (many blocks) change nothing; float32 stays float32."""
    q_g, q_q, g_g = clustered(17, 50, seed=6)
    whole = k_reciprocal_rerank(q_g.float(), q_q.float(), g_g.float())
    monkeypatch.setattr(rerank_module, "_BLOCK_ELEMENTS", 3 * 67)
    monkeypatch.setattr(rerank_module, "_PAIR_BUDGET", 50)
    blocked = k_reciprocal_rerank(q_g.float(), q_q.float(), g_g.float())
    assert blocked.dtype == torch.float32
    torch.testing.assert_close(blocked, whole, rtol=0, atol=1e-6)
    ref = paper_rerank(q_g.float(), q_q.float(), g_g.float())
    np.testing.assert_allclose(blocked.numpy(), ref, rtol=0, atol=1e-5)


def test_row_blocks_from_features() -> None:
    """The streaming form, fed rows computed on the fly, equals the dense form."""
    q_g, q_q, g_g = clustered(6, 20, seed=7)
    full = torch.cat([torch.cat([q_q, q_g], 1), torch.cat([q_g.T, g_g], 1)])

    def blocks():
        yield from full.split(4)

    torch.testing.assert_close(
        rerank_row_blocks(blocks, 6, 20, RerankSettings(5, 2, 0.4)),
        k_reciprocal_rerank(q_g, q_q, g_g, 5, 2, 0.4),
    )


def test_reranking_changes_the_order_towards_the_clusters() -> None:
    """Not the identity: on clustered data re-ranking reorders, and the nearest item stays near."""
    q_g, q_q, g_g = clustered(10, 40, seed=8)
    out = k_reciprocal_rerank(q_g, q_q, g_g)
    assert not torch.equal(out.argsort(dim=1), q_g.argsort(dim=1))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k1": 0}, "k1 must be an integer >= 1"),
        ({"k2": 2.5}, "k2 must be an integer >= 1"),
        ({"lambda_value": 1.5}, r"lambda must be in \[0, 1\]"),
    ],
)
def test_bad_settings(kwargs, match) -> None:
    q_g, q_q, g_g = clustered(3, 5, seed=9)
    with pytest.raises(MDReIDError, match=match):
        k_reciprocal_rerank(q_g, q_q, g_g, **kwargs)


def test_bad_matrices() -> None:
    q_g, q_q, g_g = clustered(3, 5, seed=10)
    with pytest.raises(MDReIDError, match=r"g_g \(5, 5\), got \(3, 3\) and \(4, 5\)"):
        k_reciprocal_rerank(q_g, q_q, g_g[:4])
    with pytest.raises(MDReIDError, match="NaN or inf"):
        k_reciprocal_rerank(q_g.masked_fill(q_g > 3, torch.inf), q_q, g_g)
    with pytest.raises(MDReIDError, match="dtype"):
        k_reciprocal_rerank(q_g, q_q.float(), g_g)
    with pytest.raises(MDReIDError, match="distance 0 from every other"):
        k_reciprocal_rerank(torch.zeros(2, 3), torch.zeros(2, 2), torch.zeros(3, 3))
