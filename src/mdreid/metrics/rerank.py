"""k-reciprocal re-ranking (Zhong et al., CVPR 2017) with memory that grows with N*k, not N^2.

The algorithm works on the (Q+G) x (Q+G) matrix ``M = [[q_q, q_g], [q_g^T, g_g]]`` of the queries and the
gallery together. As in the authors' code (which fast-reid and torchreid ship as ``re_ranking``):

1. ``t(i, j) = M(j, i)^2 / max_l M(l, i)^2``: squared distances, each item's column scaled by its maximum
   (row i of ``t`` is column i of ``M``; for symmetric ``q_q`` and ``g_g`` it is row i);
2. ``F(i, k)``: the k nearest items of i by ``t`` (i itself included), ``R(i, k) = {j in F(i, k): i in
   F(j, k)}`` its k-reciprocal set;
3. the expansion ``R*(i) = R(i, k1+1)`` united with ``R(c, round(k1/2)+1)`` of every c in it that shares more
   than 2/3 of its members with ``R(i, k1+1)``;
4. ``V(i, j) = exp(-t(i, j))`` on ``R*(i)``, each row normalised to sum 1; with ``k2 > 1`` every row is
   replaced by the mean of the rows of its ``k2`` nearest items (local query expansion);
5. ``jaccard(q, g) = 1 - s / (2 - s)`` with ``s = sum_j min(V(q, j), V(g, j))``, and the result is
   ``(1 - lambda) * jaccard + lambda * t`` on the query x gallery block.

Only step 2 needs whole rows of ``M``, and only their k nearest entries and maxima: ``M`` is read twice in
row blocks (``row_blocks``), the neighbour sets are [N, k] index tables, ``V`` is a sparse matrix with
``O(N k1 k2)`` entries and the Jaccard sums run over the inverted index of ``V`` (query rows in blocks).
Nearest-neighbour ties are broken by the lower index (the reference's ``argsort`` leaves them undefined).
``V`` and the Jaccard term are computed in float64, the distances in their own dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import astuple, dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from mdreid.process.errors import MDReIDError

RowBlocks = Callable[[], Iterator[Tensor]]
_BLOCK_ELEMENTS = 1 << 22  # distances per row block (~16 MB in float32)
_PAIR_BUDGET = 1 << 20  # index pairs expanded at once (expansion sets, Jaccard sums)


def check_rerank_settings(k1: int, k2: int, lambda_value: float) -> None:
    """Raise on settings outside the algorithm's domain (checked before any work)."""
    for name, k in (("k1", k1), ("k2", k2)):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise MDReIDError(f"re-ranking {name} must be an integer >= 1, got {k!r}")
    if isinstance(lambda_value, bool) or not isinstance(lambda_value, (int, float)):
        raise MDReIDError(f"re-ranking lambda must be a number in [0, 1], got {lambda_value!r}")
    if not 0.0 <= float(lambda_value) <= 1.0:
        raise MDReIDError(f"re-ranking lambda must be in [0, 1], got {lambda_value}")


@dataclass(frozen=True)
class RerankSettings:
    """The paper's parameters: k1 (reciprocal neighbours), k2 (query expansion), lambda (original share)."""

    k1: int = 20
    k2: int = 6
    lambda_value: float = 0.3

    def __post_init__(self) -> None:
        check_rerank_settings(self.k1, self.k2, self.lambda_value)


def k_reciprocal_rerank(
    q_g: Tensor,
    q_q: Tensor,
    g_g: Tensor,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
) -> Tensor:
    """Re-ranked query x gallery distances from the three distance matrices (``re_ranking``'s signature).

    ``q_g`` [Q, G], ``q_q`` [Q, Q], ``g_g`` [G, G]: finite floating-point distances (smaller = closer), on the
    CPU. Returns [Q, G] in ``q_g``'s dtype. See the module docstring for the algorithm.
    """
    settings = RerankSettings(k1, k2, lambda_value)
    if q_g.ndim != 2 or q_q.ndim != 2 or g_g.ndim != 2:
        raise MDReIDError(
            f"k_reciprocal_rerank: q_g, q_q, g_g must be 2-D, got {tuple(q_g.shape)}, {tuple(q_q.shape)}, "
            f"{tuple(g_g.shape)}"
        )
    num_q, num_g = q_g.shape
    if q_q.shape != (num_q, num_q) or g_g.shape != (num_g, num_g):
        raise MDReIDError(
            f"k_reciprocal_rerank: with q_g {tuple(q_g.shape)}, q_q must be {(num_q, num_q)} and g_g "
            f"{(num_g, num_g)}, got {tuple(q_q.shape)} and {tuple(g_g.shape)}"
        )
    if num_q == 0 or num_g == 0:
        raise MDReIDError(f"k_reciprocal_rerank: empty query set or gallery (q_g {tuple(q_g.shape)})")
    for name, x in (("q_g", q_g), ("q_q", q_q), ("g_g", g_g)):
        if not x.is_floating_point() or x.dtype != q_g.dtype or x.device.type != "cpu":
            raise MDReIDError(
                f"k_reciprocal_rerank: {name} must be a CPU float tensor of q_g's dtype {q_g.dtype}, "
                f"got {x.dtype} on {x.device}"
            )
        if not _finite(x):
            raise MDReIDError(
                f"k_reciprocal_rerank: {name} has NaN or inf entries; re-rank only comparable items"
            )
    step = max(1, _BLOCK_ELEMENTS // (num_q + num_g))

    def row_blocks() -> Iterator[Tensor]:  # rows of [[q_q, q_g], [q_g^T, g_g]]^T
        for s in range(0, num_q, step):
            yield torch.cat([q_q[:, s : s + step].T, q_g[s : s + step]], dim=1)
        for s in range(0, num_g, step):
            yield torch.cat([q_g[:, s : s + step].T, g_g[:, s : s + step].T], dim=1)

    return rerank_row_blocks(row_blocks, num_q, num_g, settings)


def rerank_row_blocks(
    row_blocks: RowBlocks, num_query: int, num_gallery: int, settings: RerankSettings | None = None
) -> Tensor:
    """Re-ranked [Q, G] distances from ``row_blocks()``, which yields consecutive row blocks of the
    (Q+G) x (Q+G) distance matrix ``M^T`` (queries first; finite, CPU, one float dtype) and is called twice.

    For symmetric ``q_q`` and ``g_g`` the rows of ``M^T`` are those of ``M``, so distances computed on the fly
    from features (e.g. ``PairDistances`` chunks) serve directly and the whole matrix is never held.
    """
    k1, k2, lambda_value = astuple(settings or RerankSettings())
    if num_query < 1 or num_gallery < 1:
        raise MDReIDError(f"re-ranking: needs a query and a gallery item, got Q={num_query}, G={num_gallery}")
    n = num_query + num_gallery
    k_fwd, k_half, k_qe = min(k1 + 1, n), min(round(k1 / 2) + 1, n), min(k2, n)
    # pass 1: each item's nearest neighbours (and the scaling the paper's t applies to its row)
    nearest = torch.cat([_nearest(_scaled(block), max(k_fwd, k_qe)) for block in _checked(row_blocks(), n)])
    if nearest.shape[0] != n:
        raise MDReIDError(f"re-ranking: row_blocks gave {nearest.shape[0]} rows, expected Q+G = {n}")
    src, dst = _expansion(nearest[:, :k_fwd], nearest[:, :k_half], n)
    # pass 2: the weights on the expansion sets, and the query x gallery t for the final mix
    weights = np.empty(src.shape[0], dtype=np.float64)
    out = torch.empty(0)
    row = 0
    for block in _checked(row_blocks(), n):
        t = _scaled(block)
        stop = row + t.shape[0]
        lo, hi = np.searchsorted(src, [row, stop])
        picked = t[torch.from_numpy(src[lo:hi] - row), torch.from_numpy(dst[lo:hi])]
        weights[lo:hi] = np.exp(-picked.double().numpy())
        if row < num_query:
            if row == 0:
                out = torch.empty((num_query, num_gallery), dtype=t.dtype)
            rows = slice(row, min(stop, num_query))
            out[rows] = t[: rows.stop - row, num_query:] * lambda_value
        row = stop
    if row != n:
        raise MDReIDError(f"re-ranking: row_blocks gave {row} rows on its second call, expected Q+G = {n}")
    sums = np.bincount(src, weights=weights, minlength=n)
    v = sp.csr_matrix((weights / sums[src], (src, dst)), shape=(n, n))
    if k2 != 1:  # local query expansion: mean of the k2 nearest rows
        qe = nearest[:, :k_qe].numpy()
        expand = sp.csr_matrix(
            (np.full(qe.size, 1.0 / k_qe), (np.repeat(np.arange(n), k_qe), qe.ravel())), shape=(n, n)
        )
        v = (expand @ v).tocsr()
    _add_jaccard_(out, v[:num_query], v[num_query:].tocsc(), 1.0 - lambda_value)
    return out


def _checked(blocks: Iterator[Tensor], n: int) -> Iterator[Tensor]:
    for block in blocks:
        if block.ndim != 2 or block.shape[1] != n or not block.is_floating_point():
            raise MDReIDError(
                f"re-ranking: every row block must be a float [rows, Q+G={n}] tensor, got {block.dtype} "
                f"{tuple(block.shape)}"
            )
        if not _finite(block):
            raise MDReIDError(
                "re-ranking: the distances have NaN or inf entries; re-rank comparable items only"
            )
        yield block.cpu()


def _finite(x: Tensor) -> bool:
    """No NaN or inf entry: one reduction on the common path, the exact test only when the sum is not finite."""
    return bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all())


def _scaled(block: Tensor) -> Tensor:
    """The paper's ``t`` on a row block: squared distances over each row's maximum."""
    sq = block.square()
    top = sq.amax(dim=1, keepdim=True)
    if bool((top == 0).any()):
        raise MDReIDError(
            "re-ranking: an item is at distance 0 from every other item (e.g. all features equal), so its "
            "distances cannot be scaled by their maximum"
        )
    return sq / top


def _nearest(t: Tensor, k: int) -> Tensor:
    """[rows, k] indices of each row's k smallest entries, by (value, index)."""
    values, index = torch.topk(t, min(k + 1, t.shape[1]), dim=1, largest=False, sorted=True)
    # rows where the (k+1)-th smallest ties with the k-th, so the tie decides who is in: rank the whole row
    spill = values[:, k] == values[:, k - 1] if k < t.shape[1] else torch.zeros(len(t), dtype=torch.bool)
    values, index = values[:, :k], index[:, :k]
    index, by_index = index.sort(dim=1)
    values = values.gather(1, by_index)
    index = index.gather(1, values.sort(dim=1, stable=True).indices)
    if bool(spill.any()):
        index[spill] = torch.sort(t[spill], dim=1, stable=True).indices[:, :k]
    return index


def _contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """``keys`` in ``sorted_keys`` (ascending), elementwise, by binary search."""
    at = np.minimum(np.searchsorted(sorted_keys, keys), max(sorted_keys.size - 1, 0))
    return sorted_keys[at] == keys if sorted_keys.size else np.zeros(keys.shape, dtype=bool)


def _reciprocal(nearest: Tensor, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Edges (i, j) of the k-reciprocal sets, sorted by (i, j): j in F(i) and i in F(j)."""
    k = nearest.shape[1]
    src = np.repeat(np.arange(n, dtype=np.int64), k)
    dst = nearest.numpy().astype(np.int64).ravel()
    keep = _contains(np.sort(src * n + dst), dst * n + src)
    keys = np.sort(src[keep] * n + dst[keep])
    return keys // n, keys % n


def _expansion(forward: Tensor, half: Tensor, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Edges (i, j) of the expanded sets R*(i), sorted by (i, j), without repeats; rows in blocks, so the
    (edge, candidate member) pairs in memory stay within the pair budget."""
    r_src, r_dst = _reciprocal(forward, n)
    r_keys = r_src * n + r_dst  # sorted
    h_src, h_dst = _reciprocal(half, n)
    h_count = np.bincount(h_src, minlength=n)
    h_start = np.concatenate([[0], np.cumsum(h_count)])
    step = max(1, _PAIR_BUDGET // (forward.shape[1] * half.shape[1]))
    parts = []
    for row in range(0, n, step):
        lo, hi = np.searchsorted(r_src, [row, row + step])
        src, dst = r_src[lo:hi], r_dst[lo:hi]
        # members of R(c, half) for every edge (i, c) of R(i, k1+1), as (edge, member) pairs
        counts = h_count[dst]
        edge = np.repeat(np.arange(src.size), counts)
        member = h_dst[
            np.repeat(h_start[dst], counts)
            + np.arange(edge.size)
            - np.repeat(np.cumsum(counts) - counts, counts)
        ]
        shared = _contains(r_keys, src[edge] * n + member)
        overlap = np.bincount(edge, weights=shared, minlength=src.size)
        taken = (3 * overlap > 2 * counts)[edge]  # the candidate shares more than 2/3 of its set
        parts.append(np.unique(np.concatenate([src * n + dst, src[edge[taken]] * n + member[taken]])))
    keys = np.concatenate(parts)
    return keys // n, keys % n


def _add_jaccard_(out: Tensor, v_query: sp.csr_matrix, v_gallery: sp.csc_matrix, scale: float) -> None:
    """``out += scale * (1 - s / (2 - s))`` with ``s(q, g) = sum_j min(V(q, j), V(g, j))``, by query blocks.

    Each query entry (q, j) meets the gallery entries of column j (the inverted index); blocks of queries
    are sized so that the expanded (query entry, gallery entry) pairs stay within a fixed budget.
    """
    num_query, num_gallery = out.shape
    col_count = np.diff(v_gallery.indptr)
    present = sp.csr_matrix((np.ones(v_query.nnz), v_query.indices, v_query.indptr), shape=v_query.shape)
    cumulative = np.cumsum(present @ col_count)
    start = 0
    while start < num_query:
        done = cumulative[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(cumulative, done + _PAIR_BUDGET, side="right")))
        block = v_query[start:stop].tocoo()
        counts = col_count[block.col]
        entry = np.repeat(np.arange(block.nnz), counts)
        offset = np.arange(entry.size) - np.repeat(np.cumsum(counts) - counts, counts)
        position = v_gallery.indptr[block.col][entry] + offset
        contribution = np.minimum(block.data[entry], v_gallery.data[position])
        s = np.bincount(
            block.row[entry] * num_gallery + v_gallery.indices[position],
            weights=contribution,
            minlength=(stop - start) * num_gallery,
        ).reshape(stop - start, num_gallery)
        out[start:stop] += torch.from_numpy(scale * (1.0 - s / (2.0 - s))).to(out.dtype)
        start = stop
