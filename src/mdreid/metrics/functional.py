"""CMC, mAP and mINP of a query x gallery distance matrix: the ReID ranking metric, vectorised.

The numbers equal the classic per-query loop of torchreid / fast-reid (``eval_market1501``): for each
query, drop the junk gallery entries, rank the rest by distance, and score the ranked 0/1 match list.
Here every query of a chunk is scored at once with one stable sort and a few cumulative sums, on the
device the distances live on; the only Python loop is over query chunks, which bounds the memory.

Conventions (shared by every caller of this module):

* **Junk**: a gallery entry with the same pid *and* the same group as the query (group = camera for
  RGBNT201/RGBNT100, scene for MSVR310). It is removed before ranking, as if it were not there.
* **+inf = absent**: a distance equal to ``+inf`` means "not comparable" (e.g. the gallery sample lacks
  a modality the scenario needs) and is removed exactly like junk. A query whose row is all ``+inf``
  therefore has no valid positive and is skipped. NaN distances are an error.
* **Ties**: the sort is stable, so equal distances keep gallery index order (lower index ranks first).
  The result is deterministic; classic loops use ``np.argsort`` (quicksort), whose tie order is not
  defined, so they agree with this one on tie-free inputs only.
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


def query_rank_stats(
    dist: Tensor, q_pids: Tensor, g_pids: Tensor, q_groups: Tensor, g_groups: Tensor
) -> QueryRankStats:
    """Rank every gallery item for every query of ``dist`` [Q, G] at once (one chunk; see module doc).

    Junk and absent entries are set to +inf, so after a stable ascending sort the valid (finite) items
    form a prefix of each row, in distance order with ties by gallery index; a position in the sorted
    row is then the rank among valid items. From the cumulative hit count h at each position k
    (0-based), AP = mean of h/(k+1) over the hits, the first hit is the number of positions with
    h == 0, and the last hit is the number of positions with h < num_pos.
    """
    if torch.isnan(dist).any():
        raise MDReIDError(
            "distance matrix contains NaN: the features are not finite (diverged model or fp16 overflow); "
            "check the checkpoint or evaluate in fp32"
        )
    same_pid = q_pids[:, None] == g_pids[None, :]
    excluded = (same_pid & (q_groups[:, None] == g_groups[None, :])) | (dist == math.inf)
    order = torch.sort(dist.masked_fill(excluded, math.inf), dim=1, stable=True).indices
    match = (same_pid & ~excluded).gather(1, order)
    hits = match.cumsum(dim=1, dtype=torch.int32)
    num_pos = hits[:, -1]
    ranks = torch.arange(1, dist.shape[1] + 1, device=dist.device, dtype=torch.float64)
    num_pos_f = num_pos.clamp_min(1).to(torch.float64)
    last_hit = (hits < num_pos[:, None]).sum(dim=1)
    return QueryRankStats(
        ap=torch.where(match, hits / ranks, 0.0).sum(dim=1) / num_pos_f,
        inp=num_pos_f / (last_hit + 1),
        first_hit=(hits == 0).sum(dim=1),
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
