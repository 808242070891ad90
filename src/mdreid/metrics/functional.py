"""CMC, mAP and mINP of a query x gallery distance matrix: the ReID ranking metric, vectorised.

The numbers equal the classic per-query loop of torchreid / fast-reid (``eval_market1501``): for each
query, drop the junk gallery entries, rank the rest by distance, and score the ranked 0/1 match list.
Here every query of a chunk is scored at once, without sorting the rows (see ``query_rank_stats``), on
the device the distances live on; the only Python loop is over query chunks, which bounds the memory.

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

import math
from typing import NamedTuple

import torch
from torch import Tensor

from mdreid.errors import MDReIDError

# Elements of one query chunk (rows x gallery size); ranking needs ~35 bytes of workspace each.
DEFAULT_CHUNK_ELEMENTS = 1 << 22


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

    same_pid: Tensor  # [C, G] bool
    junk: Tensor  # [C, G] bool: same pid and same group


def rank_masks(q_pids: Tensor, g_pids: Tensor, q_groups: Tensor, g_groups: Tensor) -> RankMasks:
    same_pid = q_pids[:, None] == g_pids[None, :]
    return RankMasks(same_pid, same_pid & (q_groups[:, None] == g_groups[None, :]))


def query_rank_stats(
    dist: Tensor,
    q_pids: Tensor,
    g_pids: Tensor,
    q_groups: Tensor,
    g_groups: Tensor,
    masks: RankMasks | None = None,
) -> QueryRankStats:
    """Rank every gallery item for every query of ``dist`` [Q, G] at once (one chunk; see module doc).

    No row is sorted. Only the ranks of the positives matter: the j-th nearest positive (1-based) sits at
    rank ``j + n_j``, where ``n_j`` counts the valid negatives that precede it. The positives come from one
    ``topk``; each *hard* negative (not farther than the row's farthest positive; the others precede no
    positive) is assigned, by one binary search, the number of positives strictly nearer than it, and a
    histogram + cumulative sum turns that into ``n_j``. Work is O(G log P) per query instead of a full
    O(G log G) stable sort, and falls with the number of hard negatives, i.e. as the model gets better.
    ``masks`` (from ``rank_masks`` on the same ids) saves recomputing them for every modality pair.
    """
    if torch.isnan(dist).any():
        raise MDReIDError(
            "distance matrix contains NaN: the features are not finite (diverged model or fp16 overflow); "
            "check the checkpoint or evaluate in fp32"
        )
    rows_in_chunk = dist.shape[0]
    same_pid, junk = masks or rank_masks(q_pids, g_pids, q_groups, g_groups)
    excluded = junk | (dist == math.inf)
    pos = same_pid & ~excluded
    num_pos = pos.sum(dim=1)
    k = max(int(num_pos.max()), 1)
    pos_dist = torch.topk(dist.masked_fill(~pos, math.inf), k, dim=1, largest=False).values  # ascending
    last_pos = pos_dist.gather(1, (num_pos - 1).clamp_min(0)[:, None])
    hard = ~same_pid & ~excluded & (dist <= last_pos) & (num_pos > 0)[:, None]
    rows, cols = hard.nonzero(as_tuple=True)
    # One 1-D search for the whole chunk: row r is shifted into its own range [r * span, (r + 1) * span).
    valid_dist = dist.masked_fill(excluded, math.inf)
    low = float(valid_dist.amin()) if bool(pos.any()) else 0.0
    finite = torch.isfinite(pos_dist)
    span = (float(pos_dist[finite].amax()) - low if bool(finite.any()) else 0.0) + 1.0
    shift = torch.arange(rows_in_chunk, device=dist.device, dtype=torch.float64)[:, None] * span - low
    # padding (rows with fewer than k positives) sits just under the next row's range, above every value
    bounds = (torch.where(finite, pos_dist.double(), low + span - 0.5) + shift).flatten()
    nearer = torch.searchsorted(bounds, dist[rows, cols].double() + shift[rows, 0]) - rows * k  # 0..k
    counts = torch.zeros(rows_in_chunk * (k + 1), device=dist.device, dtype=torch.int64)
    counts.index_add_(0, rows * (k + 1) + nearer, torch.ones_like(nearer))
    negatives_before = counts.view(rows_in_chunk, k + 1)[:, :k].cumsum(dim=1)
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

    Junk (same pid and same group) and ``+inf`` entries are removed before ranking; ties are broken by
    gallery index order (stable sort); queries without a remaining positive are skipped. See the module
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
    rows = chunk_size or default_chunk_rows(num_g)
    stats = QueryRankStats.cat(
        [
            query_rank_stats(
                dist[s : s + rows], q_pids[s : s + rows], g_pids, q_groups[s : s + rows], g_groups
            )
            for s in range(0, num_q, rows)
        ]
    )
    out = summarize_rank_stats(stats, max_rank)
    if return_per_query:
        out["ap"] = stats.ap.masked_fill(~stats.valid, math.nan)
        out["valid"] = stats.valid
    return out
