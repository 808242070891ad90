"""``AnyToAnyReID``: the torchmetrics Metric that scores every (query subset -> gallery subset) scenario.

Each sample is encoded once; ``update`` stores its per-modality specific/shared features, presence mask,
ids and its role (query, gallery or both, as in RGBNT201). ``compute`` builds every configured pair's
distances from those cached features (``pair_similarity``) and ranks them (``functional``).

DDP: states are ``cat`` lists, so torchmetrics all-gathers them to every rank, which then computes the
same result. ``compute`` de-duplicates samples by (index, role), dropping the repeats a padding
``DistributedSampler`` adds, and sorts them by (index, role), so the result never depends on the sharding
or arrival order (the ranking's tie rule depends on no order either; see ``functional``). ``index``
must identify a sample within its role, e.g. its position in its split's sorted listing
(``Record.index``). Each rank must see at least one sample: torchmetrics cannot gather a rank's empty
state against others' multi-dimensional features.

Speed: pairs whose distance matrices are identical are built and ranked once
(``PairDistances.distinct_pairs``), and one ranking workspace serves every chunk and pair.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from mdreid.metrics.evaluation import Evaluation
from mdreid.metrics.functional import (
    QueryRankStats,
    query_rank_stats,
    rank_masks,
    rank_workspace,
    summarize_rank_stats,
)
from mdreid.metrics.groups import named_groups, pair_name
from mdreid.metrics.pair_rerank import SideFeatures, reranked_pair_distance
from mdreid.metrics.pair_selection import PairSelection
from mdreid.metrics.pair_similarity import SIMILARITY_MODES, PairDistances
from mdreid.metrics.rerank import RerankSettings
from mdreid.metrics.results import AnyToAnyResult
from mdreid.modalities import NUM_MODALITIES, SUBSETS
from mdreid.process.errors import MDReIDError

JUNK_RULES: tuple[str, ...] = ("camera", "scene")
# what the metric keeps of each sample besides its features and its position (``index``): callers hand
# these over from a batch or a sample table by name
SAMPLE_KEYS: tuple[str, ...] = ("present", "pid", "camid", "sceneid", "is_query", "is_gallery")
_STATES: tuple[str, ...] = ("sp", "sh", "index", *SAMPLE_KEYS)


def check_metric_arguments(
    similarity: str, max_rank: int, rerank: bool, rerank_k1: int, rerank_k2: int, rerank_lambda: float
) -> RerankSettings | None:
    """The checks on the metric's configurable arguments (the ``eval`` section runs them too, at start-up);
    returns the re-ranking settings, None without re-ranking (bad settings are an error either way)."""
    if similarity not in SIMILARITY_MODES:
        raise MDReIDError(
            f"eval.similarity: unknown mode {similarity!r}: use one of {', '.join(SIMILARITY_MODES)}"
        )
    if max_rank < 10:
        raise MDReIDError(f"eval.max_rank: must be >= 10 (R10 is reported), got {max_rank}")
    if not isinstance(rerank, bool):
        raise MDReIDError(f"eval.rerank: must be true or false, got {rerank!r}")
    settings = RerankSettings(rerank_k1, rerank_k2, rerank_lambda)
    return settings if rerank else None


def _cat(state: list[Tensor] | Tensor) -> Tensor | None:
    """A list state (or its synced tensor) as one tensor; None when nothing was stored."""
    if isinstance(state, list) and not state:
        return None
    out = dim_zero_cat(state)
    return out if out.numel() else None


_LISTED_PAIRS = 6  # impossible pairs named in the error
_SUGGESTED_PAIRS = 12  # at most this many scorable pairs are spelled out as an eval.pairs value


def check_scorable(pairs: Sequence[tuple[str, str]], distances: PairDistances) -> None:
    """Every pair needs a query with all of its query modalities and a gallery item with all of its gallery
    ones; otherwise one error naming every such pair and the missing combinations (not just the first)."""
    no_query = sorted({q for q, _ in pairs if not bool(distances.query_mask(q).any())}, key=SUBSETS.index)
    no_gallery = sorted({g for _, g in pairs if not bool(distances.gallery_mask(g).any())}, key=SUBSETS.index)
    bad = [(q, g) for q, g in pairs if q in no_query or g in no_gallery]
    if not bad:
        return
    why = [
        f"no {side} has all of {' / '.join(s)}"
        for side, s in (("query", no_query), ("gallery item", no_gallery))
        if s
    ]
    names = [pair_name(q, g) for q, g in bad]
    more = f" (+{len(names) - _LISTED_PAIRS} more)" if len(names) > _LISTED_PAIRS else ""
    good = [pair_name(q, g) for q, g in pairs if (q, g) not in bad]
    fix = "check the presence mask, or drop them from eval.pairs"
    if 0 < len(good) <= _SUGGESTED_PAIRS:
        fix += f': eval.pairs="[{",".join(repr(n) for n in good)}]" scores the others'
    raise MDReIDError(
        f"{len(bad)} of {len(pairs)} pairs cannot be scored ({'; '.join(why)}): "
        f"{', '.join(names[:_LISTED_PAIRS])}{more}; {fix}"
    )


class AnyToAnyReID(Metric):
    """mAP / CMC / mINP of every configured (query subset -> gallery subset) pair, in percent.

    Args:
        pairs: a ``PairSelection``, or what ``PairSelection.parse`` reads: ``"all"`` (49 pairs), ``"paper"`` or
            an explicit list such as ``["RT->NT", ("R", "N")]``.
        similarity: ``"code"`` (default; the official construction, fixed), ``"paper"`` (Eqs. 3-10) or
            ``"common"`` (one feature per modality, compared over the common modalities); see
            ``pair_similarity``.
        junk: ``"camera"`` (RGBNT201, RGBNT100) or ``"scene"`` (MSVR310): gallery entries with the query's
            pid and camera / scene are removed before ranking.
        max_rank: length of the CMC curves (>= 10, since R10 is reported).
        chunk_size: query rows ranked at a time (default: about 4M distances per chunk).
        rerank: k-reciprocal re-ranking of every pair (``pair_rerank``) with ``rerank_k1``, ``rerank_k2`` and
            ``rerank_lambda`` (the paper's k1, k2, lambda).
        kwargs: torchmetrics ``Metric`` options (``sync_on_compute``, ``process_group``, ...).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        pairs: PairSelection | str | Sequence = "all",
        similarity: str = "code",
        junk: str = "camera",
        max_rank: int = 50,
        chunk_size: int | None = None,
        rerank: bool = False,
        rerank_k1: int = 20,
        rerank_k2: int = 6,
        rerank_lambda: float = 0.3,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if junk not in JUNK_RULES:
            raise MDReIDError(f"metric junk: unknown rule {junk!r}: use one of {', '.join(JUNK_RULES)}")
        self.rerank = check_metric_arguments(
            similarity, max_rank, rerank, rerank_k1, rerank_k2, rerank_lambda
        )
        self.pairs = PairSelection.parse(pairs)
        self.similarity = similarity
        self.junk = junk
        self.max_rank = max_rank
        self.chunk_size = chunk_size
        for name in _STATES:
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(
        self,
        sp: Tensor | None,
        sh: Tensor | None,
        present: Tensor,
        pid: Tensor,
        camid: Tensor,
        sceneid: Tensor,
        index: Tensor,
        is_query: Tensor,
        is_gallery: Tensor,
    ) -> None:
        """Store a batch: ``sp``/``sh`` [B, 3, D] (kept in their dtype; None = the model has none; give
        the same ones every batch), ``present`` [B, 3] bool, ids and role flags [B]."""
        if present.ndim != 2 or present.shape[1] != NUM_MODALITIES:
            raise MDReIDError(
                f"AnyToAnyReID.update: present must be [B, {NUM_MODALITIES}], got {tuple(present.shape)}"
            )
        batch = present.shape[0]
        for name, x in (("sp", sp), ("sh", sh)):
            if x is not None and (x.ndim != 3 or x.shape[:2] != (batch, NUM_MODALITIES)):
                raise MDReIDError(
                    f"AnyToAnyReID.update: {name} must be [B={batch}, {NUM_MODALITIES}, D], got {tuple(x.shape)}"
                )
            if self.pid and bool(getattr(self, name)) != (x is not None):
                raise MDReIDError(
                    f"AnyToAnyReID.update: {name} given in some batches and None in others; be consistent"
                )
        if sp is None and sh is None:
            raise MDReIDError("AnyToAnyReID.update: sp and sh are both None; give the model's features")
        ids = {
            "pid": pid,
            "camid": camid,
            "sceneid": sceneid,
            "index": index,
            "is_query": is_query,
            "is_gallery": is_gallery,
        }
        for name, x in ids.items():
            if x.shape != (batch,):
                raise MDReIDError(
                    f"AnyToAnyReID.update: {name} must have shape ({batch},), got {tuple(x.shape)}"
                )
        if sp is not None:
            self.sp.append(sp.detach())
        if sh is not None:
            self.sh.append(sh.detach())
        self.present.append(present.bool())
        for name in ("pid", "camid", "sceneid", "index"):
            getattr(self, name).append(ids[name].long())
        self.is_query.append(is_query.bool())
        self.is_gallery.append(is_gallery.bool())

    def samples(self) -> dict[str, Tensor | None]:
        """All stored samples, one per (index, role), sorted by (index, role)."""
        data = {name: _cat(getattr(self, name)) for name in _STATES}
        if data["pid"] is None:
            raise MDReIDError(
                "AnyToAnyReID.compute: no samples; call update() with the query and gallery batches first"
            )
        index = data["index"]
        role = data["is_query"].long() + 2 * data["is_gallery"].long()
        if bool((index < 0).any()):
            raise MDReIDError("AnyToAnyReID: index must be >= 0 (each sample's position in its split)")
        if bool((role == 0).any()):
            raise MDReIDError(
                "AnyToAnyReID: a sample is neither query nor gallery; set is_query / is_gallery"
            )
        keys, inverse = torch.unique(index * 4 + role, sorted=True, return_inverse=True)
        position = torch.arange(index.numel(), device=index.device)
        first = torch.full_like(keys, index.numel()).scatter_reduce_(0, inverse, position, reduce="amin")
        return {name: None if x is None else x[first] for name, x in data.items()}

    def compute(self) -> AnyToAnyResult:
        """Score every configured pair; see the module docstring for de-duplication and order."""
        return self._score(self.samples())

    def evaluate(self) -> Evaluation:
        """``compute()``'s result together with the samples it scored (moved to the CPU), both from the same
        state: synchronised across ranks like ``compute``, so every rank sees every sample."""
        with self.sync_context(
            dist_sync_fn=self.dist_sync_fn, should_sync=self._to_sync, should_unsync=self._should_unsync
        ):
            data = self.samples()
            result = self._score(data)
        return Evaluation(result, {k: None if v is None else v.cpu() for k, v in data.items()})

    def _score(self, data: dict[str, Tensor | None]) -> AnyToAnyResult:
        q, g = data["is_query"], data["is_gallery"]
        if not bool(q.any()) or not bool(g.any()):
            raise MDReIDError(
                "AnyToAnyReID.compute: no query or no gallery sample; check is_query / is_gallery"
            )
        group = data["camid"] if self.junk == "camera" else data["sceneid"]
        q_pid, g_pid, q_group, g_group = data["pid"][q], data["pid"][g], group[q], group[g]
        sp, sh, present = data["sp"], data["sh"], data["present"]
        distances = PairDistances(
            None if sp is None else sp[q],
            None if sh is None else sh[q],
            present[q],
            None if sp is None else sp[g],
            None if sh is None else sh[g],
            present[g],
            chunk_size=self.chunk_size,
        )
        check_scorable(self.pairs.pairs, distances)
        if self.rerank is None:
            distinct, which = distances.distinct_pairs(self.pairs.pairs, self.similarity)
            chunks = ((rows, enumerate(d)) for rows, d in distances.chunks(distinct, self.similarity))
        else:  # Q -> Q and G -> G distances differ even where Q -> G ones coincide: no pair is shared
            distinct, which = list(self.pairs), list(range(len(self.pairs)))
            chunks = self._reranked_chunks(data, distinct, distances.chunk_size)
        stats: list[list[QueryRankStats]] = [[] for _ in distinct]
        workspace = rank_workspace(
            min(distances.chunk_size, distances.num_query), distances.num_gallery, torch.float32, q_pid.device
        )
        for rows, dists in chunks:  # dists: (pair position, distance chunk) pairs
            masks = rank_masks(q_pid[rows], g_pid, q_group[rows], g_group)  # shared by every pair
            for position, dist in dists:
                stats[position].append(
                    query_rank_stats(dist, q_pid[rows], g_pid, q_group[rows], g_group, masks, workspace)
                )
        merged = [QueryRankStats.cat(acc) for acc in stats]
        result_rows, cmc = [], {}
        for (q_subset, g_subset), position in zip(self.pairs, which, strict=True):
            name = pair_name(q_subset, g_subset)
            summary = summarize_rank_stats(merged[position], self.max_rank, what=f"the {name} gallery")
            curve = summary["cmc"].cpu() * 100
            cmc[name] = curve
            result_rows.append(
                {
                    "query": q_subset,
                    "gallery": g_subset,
                    "mAP": summary["mAP"] * 100,
                    "R1": float(curve[0]),
                    "R5": float(curve[4]),
                    "R10": float(curve[9]),
                    "mINP": summary["mINP"] * 100,
                    "num_valid": summary["num_valid"],
                    "num_query": int(distances.query_mask(q_subset).sum()),
                    "num_gallery": int(distances.gallery_mask(g_subset).sum()),
                }
            )
        rerank = None if self.rerank is None else asdict(self.rerank)
        return AnyToAnyResult(
            result_rows, cmc, named_groups(result_rows), self.similarity, self.junk, rerank=rerank
        )

    def _reranked_chunks(
        self, data: dict[str, Tensor | None], pairs: list[tuple[str, str]], chunk_size: int
    ) -> Iterator[tuple[slice, list[tuple[int, Tensor]]]]:
        """Per pair, its re-ranked distances in query chunks: ``(rows, [(pair position, chunk)])``."""
        q, g = data["is_query"], data["is_gallery"]
        side = lambda keep: SideFeatures(  # noqa: E731
            *(None if data[k] is None else data[k][keep] for k in ("sp", "sh")), data["present"][keep]
        )
        query, gallery = side(q), side(g)
        for position, (q_subset, g_subset) in enumerate(pairs):
            dist = reranked_pair_distance(
                query, gallery, q_subset, g_subset, self.similarity, self.rerank, self.chunk_size
            ).to(q.device)
            for start in range(0, dist.shape[0], chunk_size):
                rows = slice(start, min(start + chunk_size, dist.shape[0]))
                yield rows, [(position, dist[rows])]
