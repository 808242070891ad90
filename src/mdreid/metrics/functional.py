"""CMC, mAP and mINP of a query x gallery distance matrix: the ReID ranking metric, vectorised.

The numbers equal the classic per-query loop of torchreid / fast-reid (``eval_market1501``): for each
query, drop the junk gallery entries, rank the rest by distance, and score the ranked 0/1 match list.
Here every query of a chunk is scored at once from two value sorts per row and one batched binary search
(see ``query_rank_stats``), on the device the distances live on; the only Python loop is over query
chunks, which bounds the memory.

Conventions (shared by every caller of this module):

* **Junk**: a gallery entry with the same pid *and* the same group as the query (group = camera for
  RGBNT201/RGBNT100, scene for MSVR310). It is removed before ranking, as if it were not there.
* **+inf = absent**: a distance equal to ``+inf`` means "not comparable" (e.g. the gallery sample lacks
  a modality the scenario needs) and is removed exactly like junk. A query whose row is all ``+inf``
  therefore has no valid positive and is skipped. NaN distances are an error.
* **Ties**: a negative at exactly the same distance as a positive ranks before it (pessimistic); the
  order among positives or among negatives does not change any score. The rule depends on no index or
  arrival order. Classic loops use ``np.argsort`` (quicksort), whose tie order is not defined, so they
  agree with this one on tie-free inputs only.
* **Skipped queries**: a query with no positive left after removal is skipped and not counted;
  ``num_valid`` is the number of queries scored.
* **Scores**: AP = mean precision at each hit over the full ranked list; CMC(k) = fraction of scored
  queries with a hit within the top k; INP = num_pos / (rank of the last positive), i.e. fast-reid's
  ``cmc[last_hit] / (last_hit + 1)``; mAP and mINP average over the scored queries.
* **CMC padding**: the curve always has ``max_rank`` entries. When fewer than ``max_rank`` valid gallery
  items remain for a query, its curve carries its last value (1: a scored query has a hit somewhere)
  to the end, where the classic loop would truncate or raise.
"""

from __future__ import annotations

import functools
import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from mdreid.process.errors import MDReIDError

# Elements of one query chunk (rows x gallery size). The any-to-any metric holds ~62 bytes per element
# (12 base products, the distance, two sort buffers, two masks): ~260 MB per chunk.
DEFAULT_CHUNK_ELEMENTS = 1 << 22
_MIN_ROWS_PER_THREAD = 32  # smaller blocks are sorted in one thread: thread hand-off would dominate


class QueryRankStats(NamedTuple):
    """Per-query results of ranking; ``ap``/``inp``/``first_hit`` are meaningless where ``valid`` is False."""

    ap: Tensor  # [Q] float64 average precision over the full ranked list
    inp: Tensor  # [Q] float64 inverse negative penalty: num_pos / rank of the last positive
    first_hit: Tensor  # [Q] int64 0-based rank of the first positive among the valid gallery items
    valid: Tensor  # [Q] bool: the query has at least one positive left after junk/absent removal

    @staticmethod
    def cat(parts: list[QueryRankStats]) -> QueryRankStats:
        """Join the stats of consecutive query chunks."""
        return QueryRankStats(*(torch.cat(list(field)) for field in zip(*parts, strict=True)))


def default_chunk_rows(num_gallery: int, elements: int = DEFAULT_CHUNK_ELEMENTS) -> int:
    """Query rows per chunk so that one chunk holds about ``elements`` distances."""
    return max(1, elements // max(1, num_gallery))


class RankMasks(NamedTuple):
    """Masks of one query chunk that do not depend on the distances, so every modality pair can share them."""

    same_pid: Tensor  # [C, G] bool: not a negative (junk needs the same pid, so this covers it too)
    not_positive: Tensor  # [C, G] bool: other pid, or junk (same pid and same group)


def rank_masks(q_pids: Tensor, g_pids: Tensor, q_groups: Tensor, g_groups: Tensor) -> RankMasks:
    same_pid = q_pids[:, None] == g_pids[None, :]
    return RankMasks(same_pid, ~same_pid | (q_groups[:, None] == g_groups[None, :]))


def ranking_order(dist: Tensor, masks: RankMasks) -> tuple[Tensor, Tensor]:
    """The ranked lists behind the scores: each row's gallery columns ``[Q, G]`` in ranking order, and how many
    of them ``[Q]`` are ranked (the rest, junk and +inf, come last).

    Ranked by distance; at the same distance a negative comes before a positive (the tie rule above), so the
    rank of each positive here is the rank ``query_rank_stats`` scores; otherwise the lower column first.
    """
    removed = (masks.same_pid & masks.not_positive) | torch.isinf(dist)
    negatives_first = torch.sort((~masks.not_positive).to(torch.uint8), dim=1, stable=True).indices
    key = dist.masked_fill(removed, math.inf).gather(1, negatives_first)
    order = negatives_first.gather(1, torch.sort(key, dim=1, stable=True).indices)
    return order, (~removed).sum(dim=1)


def sort_rows_(x: Tensor) -> Tensor:
    """Each row of ``x`` [R, G] sorted ascending (values only; NaN last); in place on the CPU (float32/64).

    On the CPU this is numpy's SIMD sort (AVX-512/AVX2 quicksort, ~10x faster than ``torch.sort`` here),
    run in place on blocks of rows in ``torch.get_num_threads()`` threads (numpy releases the GIL);
    elsewhere ``torch.sort``, which returns a new tensor. Only values are sorted, so the result does not
    depend on the algorithm or the split.
    """
    if x.device.type != "cpu":
        return torch.sort(x, dim=1).values
    array = x.detach().numpy()
    workers = min(torch.get_num_threads(), x.shape[0] // _MIN_ROWS_PER_THREAD)
    if workers <= 1:
        array.sort(axis=1)
        return x
    bounds = np.linspace(0, x.shape[0], workers + 1).astype(int)
    blocks = [array[bounds[i] : bounds[i + 1]] for i in range(workers)]
    list(_thread_pool(workers, os.getpid()).map(lambda block: block.sort(axis=1), blocks))
    return x


@functools.cache
def _thread_pool(workers: int, pid: int) -> ThreadPoolExecutor:
    """One pool per size and process: a forked child inherits the pool object but not its threads."""
    return ThreadPoolExecutor(workers, thread_name_prefix="mdreid-sort")


def rank_workspace(rows: int, num_gallery: int, dist_dtype: torch.dtype, device: torch.device) -> Tensor:
    """Scratch for ``query_rank_stats`` on chunks of up to ``rows`` rows: reusing it across chunks and pairs
    avoids allocating (and page-faulting) two chunk-sized buffers per call, ~40% of the ranking time on a CPU."""
    return torch.empty((2, rows, num_gallery), dtype=_sort_dtype(dist_dtype), device=device)


def _sort_dtype(dist_dtype: torch.dtype) -> torch.dtype:
    """float64 stays; every other float dtype widens exactly to float32 (numpy cannot sort bfloat16)."""
    return torch.float64 if dist_dtype == torch.float64 else torch.float32


def query_rank_stats(
    dist: Tensor,
    q_pids: Tensor,
    g_pids: Tensor,
    q_groups: Tensor,
    g_groups: Tensor,
    masks: RankMasks | None = None,
    workspace: Tensor | None = None,
) -> QueryRankStats:
    """Rank every gallery item for every query of ``dist`` [Q, G] at once (one chunk; see module doc).

    Only the ranks of the positives matter: the j-th nearest positive (1-based) sits at rank ``j + n_j``,
    where ``n_j`` counts the valid negatives not farther than it (ties: negatives first). Two value sorts
    give everything: the row's positive distances (non-positives set to +inf) and its valid negative
    distances (the rest set to +inf); one batched ``searchsorted`` of the first into the second yields
    every ``n_j``. Values are sorted, not indices, so the CPU can use numpy's SIMD sort (``sort_rows_``).
    ``masks`` (from ``rank_masks`` on the same ids) saves recomputing them for every modality pair;
    ``workspace`` (from ``rank_workspace``, at least Q rows) is overwritten instead of allocating.
    """
    # the sum is NaN if any entry is (or if +inf and -inf meet): one cheap reduction on the common path
    if bool(torch.isnan(dist.sum())) and bool(torch.isnan(dist).any()):
        raise MDReIDError(
            "distance matrix contains NaN: the features are not finite (diverged model or fp16 overflow); "
            "check the checkpoint or evaluate in fp32"
        )
    num_rows, num_gallery = dist.shape
    if workspace is None:
        workspace = rank_workspace(num_rows, num_gallery, dist.dtype, dist.device)
    shape, dtype = tuple(workspace.shape), _sort_dtype(dist.dtype)
    if shape[0] != 2 or shape[1] < num_rows or shape[2] != num_gallery or workspace.dtype != dtype:
        raise MDReIDError(
            f"query_rank_stats: workspace {workspace.dtype} {shape} does not fit dist {dist.dtype} "
            f"{tuple(dist.shape)}; build it with rank_workspace(rows, num_gallery, dist.dtype, device)"
        )
    dist = dist.to(dtype)  # a no-op for float32/float64
    same_pid, not_positive = masks or rank_masks(q_pids, g_pids, q_groups, g_groups)
    # +inf entries need no mask of their own: they sort last and precede no finite positive
    inf = dist.new_full((), math.inf)
    pos_dist = torch.where(not_positive, inf, dist, out=workspace[0, :num_rows])
    neg_dist = torch.where(same_pid, inf, dist, out=workspace[1, :num_rows])
    pos_dist, neg_dist = sort_rows_(pos_dist), sort_rows_(neg_dist)  # ascending, +inf padded
    ends = torch.full((num_rows, 1), math.inf, dtype=pos_dist.dtype, device=dist.device)
    num_pos = torch.searchsorted(pos_dist, ends).squeeze(1)  # finite positives per row
    k = max(int(num_pos.max()), 1)
    pos_dist = pos_dist[:, :k].contiguous()
    negatives_before = torch.searchsorted(neg_dist, pos_dist, right=True)  # valid negatives <= each positive
    j = torch.arange(1, k + 1, device=dist.device, dtype=torch.float64)
    rank = j + negatives_before  # 1-based rank of the j-th nearest positive among the valid items
    num_pos_f = num_pos.clamp_min(1).to(torch.float64)
    last_rank = rank.gather(1, (num_pos - 1).clamp_min(0)[:, None]).squeeze(1)
    return QueryRankStats(
        ap=torch.where(j[None, :] <= num_pos[:, None], j / rank, 0.0).sum(dim=1) / num_pos_f,
        inp=num_pos_f / last_rank,
        first_hit=(rank[:, 0] - 1).long(),
        valid=num_pos > 0,
    )


def summarize_rank_stats(stats: QueryRankStats, max_rank: int, what: str = "the gallery") -> dict:
    """Average per-query stats over the valid queries into mAP, mINP and the CMC curve (fractions).

    ``what`` names the gallery in the error raised when no query is valid.
    """
    valid = stats.valid
    num_valid = int(valid.sum())
    if num_valid == 0:
        raise MDReIDError(
            f"no query has a valid positive in {what} ({valid.numel()} queries): every match is junk "
            "(same pid and same camera/scene) or absent (+inf); check the junk rule / data"
        )
    positions = torch.arange(max_rank, device=valid.device)
    found = (stats.first_hit[valid][:, None] <= positions[None, :]).sum(dim=0)  # queries hit by rank k+1
    return {
        "mAP": float(stats.ap[valid].mean()),
        "mINP": float(stats.inp[valid].mean()),
        "cmc": found.to(torch.float64) / num_valid,
        "num_valid": num_valid,
    }


def rank_metrics(
    dist: Tensor,
    q_pids: Tensor,
    g_pids: Tensor,
    q_groups: Tensor,
    g_groups: Tensor,
    max_rank: int = 50,
    chunk_size: int | None = None,
    return_per_query: bool = False,
) -> dict:
    """mAP, mINP and CMC of a Q x G distance matrix (smaller = more similar), as fractions in [0, 1].

    Junk (same pid and same group) and ``+inf`` entries are removed before ranking; a negative tied with a
    positive ranks first (pessimistic); queries without a remaining positive are skipped. See the module
    docstring for these rules and the CMC padding. Runs on ``dist``'s device, ``chunk_size`` query rows
    at a time (default: about 4M distances per chunk).

    Returns ``{"mAP", "mINP", "cmc" ([max_rank] float64), "num_valid"}``; with ``return_per_query`` also
    ``"ap"`` ([Q] float64, NaN for skipped queries) and ``"valid"`` ([Q] bool), for ranked-list plots.
    """
    if dist.ndim != 2:
        raise MDReIDError(f"rank_metrics: dist must be a 2-D Q x G matrix, got shape {tuple(dist.shape)}")
    num_q, num_g = dist.shape
    for name, tensor, size in (
        ("q_pids", q_pids, num_q),
        ("q_groups", q_groups, num_q),
        ("g_pids", g_pids, num_g),
        ("g_groups", g_groups, num_g),
    ):
        if tensor.shape != (size,):
            raise MDReIDError(
                f"rank_metrics: {name} must have shape ({size},) to match dist {tuple(dist.shape)}, "
                f"got {tuple(tensor.shape)}"
            )
    if num_q == 0 or num_g == 0:
        raise MDReIDError(f"rank_metrics: empty query set or gallery (dist shape {tuple(dist.shape)})")
    if max_rank < 1:
        raise MDReIDError(f"rank_metrics: max_rank must be >= 1, got {max_rank}")
    device = dist.device
    q_pids, g_pids, q_groups, g_groups = (t.to(device) for t in (q_pids, g_pids, q_groups, g_groups))
    rows = min(chunk_size or default_chunk_rows(num_g), num_q)
    workspace = rank_workspace(rows, num_g, dist.dtype, device)
    stats = QueryRankStats.cat(
        [
            query_rank_stats(
                dist[s : s + rows],
                q_pids[s : s + rows],
                g_pids,
                q_groups[s : s + rows],
                g_groups,
                workspace=workspace,
            )
            for s in range(0, num_q, rows)
        ]
    )
    out = summarize_rank_stats(stats, max_rank)
    if return_per_query:
        out["ap"] = stats.ap.masked_fill(~stats.valid, math.nan)
        out["valid"] = stats.valid
    return out
