"""Query x gallery distances for every (query modality subset, gallery subset) pair, from cached features.

Each sample carries, per modality m in R, N, T, a specific feature ``sp^m`` and a shared feature ``sh^m``
(``[N, 3, D]`` each, docs/method.md §2.6). Every scenario compares some query blocks with some gallery
blocks, so all 49 distance matrices derive from 12 base query x gallery dot products (3 same-modality ``sp``
products and 9 ``sh`` products, all modality pairs) and the per-block squared norms. ``PairDistances``
computes the 12 products once per query chunk and composes every requested pair from them.

**Block plan of a pair** Q -> G (modality sets), with C = Q ∩ G by modality identity:

* ``"code"`` mode (the project's fix of the official ``select_feature``; docs/method.md §5.5 and D2):
  specific pairs ``sp^m <-> sp^m`` for m in C; shared pairs ``sh^m <-> sh^m`` for m in C plus **all**
  pairs ``sh^i <-> sh^j`` of U_q x U_g, where U_q = Q \\ C and U_g = G \\ C. With three modalities at
  most one side has two unmatched modalities, so on the reported settings this is exactly what the
  official code compares: RT->NT [sp^T-sp^T; sh^R-sh^N, sh^T-sh^T], RT->N [sh^R-sh^N, sh^T-sh^N],
  R->N [sh^R-sh^N], R->NT [sh^R-sh^N, sh^R-sh^T]. An unmatched shared feature whose other side has no
  unmatched modality is not used (RNT->RN compares R and N only). The query vector is the concatenation
  of the query-side blocks of all pairs (a feature used in two pairs appears twice), the gallery vector
  likewise; each is L2-normalised as a whole and the distance is the squared Euclidean one,
  ``2 - 2 cos``. For Q == G this is exactly the official ``[sp(Q), sh(Q)]`` vector. Block order does
  not matter: the cosine only needs the sum of block dot products and the sums of block norms.
* ``"paper"`` mode (Eqs. 3-10): every 512-d block L2-normalised on its own;
  ``Sim_sp`` = mean over m in C of cos(sp_q^m, sp_g^m), ``Sim_sh`` = mean over all Q x G pairs of
  cos(sh_q^i, sh_g^j), ``Sim = (Sim_sp + Sim_sh) / 2`` (``Sim_sh`` alone when C is empty), and the
  distance is ``1 - Sim``.

* ``"common"`` mode (docs/method.md D18), for a method without decoupled features, whose one feature per
  modality is stored as ``sh`` (``sp`` None): with C non-empty, only the common modalities are compared,
  ``sh^m <-> sh^m`` (and ``sp^m <-> sp^m`` if given) for m in C; with C empty (disjoint subsets such as
  R -> NT) every cross pair ``sh^i <-> sh^j`` of Q x G, the only comparison left. The blocks are
  concatenated and compared as in ``code`` mode. It equals ``code`` on every pair except the six where
  both sides have an unmatched modality next to a common one (RT -> NT, ...), whose cross pair it drops.

With ``sp`` None (a baseline with one token per modality) only the shared blocks are used; with ``sh``
None only the specific ones, so a pair without a common modality cannot be compared.

**Missing modalities** (``present`` [N, 3] bool): a gallery item lacking a modality of the gallery
subset gets distance ``+inf`` ("not comparable", excluded by the ranking; see ``functional``), and a
query lacking a modality of the query subset gets a whole row of ``+inf``, so the ranking skips it and
it is not counted.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from mdreid.metrics.functional import DEFAULT_CHUNK_ELEMENTS, default_chunk_rows
from mdreid.modalities import NUM_MODALITIES, subset_indices
from mdreid.process.errors import MDReIDError

SIMILARITY_MODES: tuple[str, ...] = ("code", "paper", "common")
# modes that compare one cosine of the concatenated blocks (``paper`` averages per-block cosines)
CONCAT_MODES: tuple[str, ...] = ("code", "common")
_EPS = 1e-12  # as F.normalize: a zero block is divided by eps instead of 0


@dataclass(frozen=True)
class PairPlan:
    """Which blocks a (query subset, gallery subset) pair compares; see the module docstring."""

    q_mods: tuple[int, ...]
    g_mods: tuple[int, ...]
    sp: tuple[int, ...]  # modalities m compared as sp_q^m <-> sp_g^m
    sh: tuple[tuple[int, int], ...]  # (i, j) compared as sh_q^i <-> sh_g^j


def plan_pair(q_subset: str, g_subset: str, mode: str, has_sp: bool = True, has_sh: bool = True) -> PairPlan:
    """The blocks compared by ``mode`` for the pair ``q_subset -> g_subset`` (e.g. ``"RT"``, ``"NT"``)."""
    if mode not in SIMILARITY_MODES:
        raise MDReIDError(f"unknown similarity mode {mode!r}: use one of {', '.join(SIMILARITY_MODES)}")
    q_mods, g_mods = subset_indices(q_subset), subset_indices(g_subset)
    common = tuple(m for m in q_mods if m in g_mods)
    if mode == "code":
        u_q = [m for m in q_mods if m not in common]
        u_g = [m for m in g_mods if m not in common]
        sh = tuple((m, m) for m in common) + tuple((i, j) for i in u_q for j in u_g)
    elif mode == "common":
        sh = tuple((m, m) for m in common) or tuple((i, j) for i in q_mods for j in g_mods)
    else:
        sh = tuple((i, j) for i in q_mods for j in g_mods)
    plan = PairPlan(q_mods, g_mods, common if has_sp else (), sh if has_sh else ())
    if not plan.sp and not plan.sh:
        raise MDReIDError(
            f"pair {q_subset}->{g_subset} compares no features: without shared (sh) features only pairs "
            "with a common modality can be evaluated; store sh features or drop this pair"
        )
    return plan


def _check_features(name: str, x: Tensor | None, n: int) -> None:
    if x is not None and (x.ndim != 3 or x.shape[:2] != (n, NUM_MODALITIES)):
        raise MDReIDError(f"{name} must have shape [N={n}, {NUM_MODALITIES}, D], got {tuple(x.shape)}")


class PairDistances:
    """Distance matrices of any (query subset, gallery subset) pair from per-modality features.

    Features (``[N, 3, D]``, any float dtype; computed in fp32 on their device) and ``present``
    (``[N, 3]`` bool) are given once; ``chunks`` then yields, per query chunk, the distances of every
    requested pair, computing the 12 base products of that chunk once (memory ~13 x chunk x G floats).
    """

    def __init__(
        self,
        q_sp: Tensor | None,
        q_sh: Tensor | None,
        q_present: Tensor,
        g_sp: Tensor | None,
        g_sh: Tensor | None,
        g_present: Tensor,
        chunk_size: int | None = None,
    ) -> None:
        if (q_sp is None) != (g_sp is None) or (q_sh is None) != (g_sh is None):
            raise MDReIDError(
                "query and gallery must both have sp features and both have sh features, or neither"
            )
        if q_sp is None and q_sh is None:
            raise MDReIDError("PairDistances needs sp or sh features (both are None)")
        num_q, num_g = q_present.shape[0], g_present.shape[0]
        for name, x, n in (
            ("q_sp", q_sp, num_q),
            ("q_sh", q_sh, num_q),
            ("g_sp", g_sp, num_g),
            ("g_sh", g_sh, num_g),
        ):
            _check_features(name, x, n)
        for name, p, n in (("q_present", q_present, num_q), ("g_present", g_present, num_g)):
            if p.shape != (n, NUM_MODALITIES) or p.dtype != torch.bool:
                raise MDReIDError(
                    f"{name} must be a bool tensor of shape [{n}, {NUM_MODALITIES}], got {p.dtype} {tuple(p.shape)}"
                )
        self.num_query, self.num_gallery = num_q, num_g
        self.q_present, self.g_present = q_present, g_present
        self.has_sp, self.has_sh = q_sp is not None, q_sh is not None
        self.chunk_size = chunk_size or default_chunk_rows(num_g, DEFAULT_CHUNK_ELEMENTS)
        self._features = {"q_sp": q_sp, "q_sh": q_sh, "g_sp": g_sp, "g_sh": g_sh}
        # per-block squared norms [N, 3] (the code mode normalises each pair's concatenation with them)
        self._q_sq = {k: _sq_norms(x) for k, x in (("sp", q_sp), ("sh", q_sh)) if x is not None}
        self._g_sq = {k: _sq_norms(x) for k, x in (("sp", g_sp), ("sh", g_sh)) if x is not None}
        self._operands: dict[bool, dict[str, Tensor | None]] = {}

    def _gemm_operands(self, unit: bool) -> dict[str, Tensor | None]:
        """fp32 query blocks ``[N, 3, D]`` and gallery blocks laid out once for the chunk GEMMs
        (``[3, D, G]``); ``unit``: every block L2-normalised, so the products are the paper mode's cosines."""
        if unit not in self._operands:
            ops = {}
            for name, x in self._features.items():
                x = None if x is None else x.float()
                if x is not None and unit:
                    x = x / x.norm(dim=-1, keepdim=True).clamp_min(_EPS)
                if x is not None and name.startswith("g_"):
                    x = x.permute(1, 2, 0).contiguous()
                ops[name] = x
            self._operands[unit] = ops
        return self._operands[unit]

    def plan(self, q_subset: str, g_subset: str, mode: str) -> PairPlan:
        """The block plan of a pair for these features (sp / sh availability taken into account)."""
        return plan_pair(q_subset, g_subset, mode, self.has_sp, self.has_sh)

    def query_mask(self, q_subset: str) -> Tensor:
        """[Q] bool: queries that have every modality of ``q_subset`` (the others are dropped)."""
        return self.q_present[:, list(subset_indices(q_subset))].all(dim=1)

    def gallery_mask(self, g_subset: str) -> Tensor:
        """[G] bool: gallery items that have every modality of ``g_subset`` (the others are never ranked)."""
        return self.g_present[:, list(subset_indices(g_subset))].all(dim=1)

    def chunks(self, pairs: Sequence[tuple[str, str]], mode: str) -> Iterator[tuple[slice, Iterator[Tensor]]]:
        """Yield ``(query rows, distance chunks of the pairs, in order)`` chunk by chunk over the queries.

        The inner iterator builds one pair's chunk at a time from the chunk's base products. Every chunk
        is written into the same buffers (so the CPU does not page-fault fresh memory per pair): a
        yielded distance chunk is valid until the next one is drawn; copy it to keep it.
        """
        plans = [self.plan(q, g, mode) for q, g in pairs]
        g_absent = [~self.g_present[:, list(p.g_mods)].all(dim=1) for p in plans]
        rows_max = min(self.chunk_size, self.num_query)
        ops = self._gemm_operands(unit=mode == "paper")
        device = self.q_present.device
        buffers = {
            "dist": torch.empty((rows_max, self.num_gallery), dtype=torch.float32, device=device),
            **{
                kind: torch.empty((*lead, rows_max, self.num_gallery), dtype=torch.float32, device=device)
                for kind, lead in (("sp", (NUM_MODALITIES,)), ("sh", (NUM_MODALITIES, NUM_MODALITIES)))
                if ops[f"q_{kind}"] is not None
            },
        }
        for start in range(0, self.num_query, self.chunk_size):
            rows = slice(start, min(start + self.chunk_size, self.num_query))
            chunk = {k: b[..., : rows.stop - rows.start, :] for k, b in buffers.items()}
            yield rows, self._chunk_distances(plans, g_absent, rows, mode, chunk)

    def distinct_pairs(
        self, pairs: Sequence[tuple[str, str]], mode: str
    ) -> tuple[list[tuple[str, str]], list[int]]:
        """Collapse the pairs whose distance matrices are identical, so each is built and ranked once.

        Two pairs are identical when they compare the same blocks and mark the same entries absent. In
        ``code`` mode many do: a gallery modality the query lacks is unused unless the query has an
        unmatched modality too, so R->RN, R->RT and R->RNT all equal R->R (25 distinct matrices of 49).
        Absence is the same when the modalities by which the two pairs differ are present everywhere.
        Returns the first pair of each class, in order, and for every input pair its class's position.
        """
        q_gaps = {m for m in range(NUM_MODALITIES) if not bool(self.q_present[:, m].all())}
        g_gaps = {m for m in range(NUM_MODALITIES) if not bool(self.g_present[:, m].all())}
        classes: dict[tuple, int] = {}
        distinct, which = [], []
        for q_subset, g_subset in pairs:
            plan = self.plan(q_subset, g_subset, mode)
            key = (
                frozenset(plan.sp),
                frozenset(plan.sh),
                frozenset(q_gaps.intersection(plan.q_mods)),
                frozenset(g_gaps.intersection(plan.g_mods)),
            )
            if key not in classes:
                classes[key] = len(distinct)
                distinct.append((q_subset, g_subset))
            which.append(classes[key])
        return distinct, which

    def distance(self, q_subset: str, g_subset: str, mode: str = "code") -> Tensor:
        """The full Q x G distance matrix of one pair (smaller = more similar, +inf = not comparable)."""
        return torch.cat([next(dists).clone() for _, dists in self.chunks([(q_subset, g_subset)], mode)])

    def _chunk_distances(
        self, plans: list[PairPlan], g_absent: list[Tensor], rows: slice, mode: str, out: dict[str, Tensor]
    ) -> Iterator[Tensor]:
        """Distances of every plan on these query rows; ``out`` holds the chunk's buffers (see ``chunks``)."""
        dots = self._base_products(rows, mode == "paper", out)
        for plan, absent in zip(plans, g_absent, strict=True):
            q_absent = ~self.q_present[rows][:, list(plan.q_mods)].all(dim=1)
            dist = self._compose(plan, mode, rows, dots, out["dist"])
            if bool(q_absent.any()) or bool(absent.any()):  # all present is the common case: skip the pass
                dist.masked_fill_(q_absent[:, None] | absent[None, :], torch.inf)
            yield dist

    def _base_products(self, rows: slice, unit: bool, out: dict[str, Tensor]) -> dict[str, Tensor]:
        """The chunk's 12 dot products, each a contiguous [C, G] block (pairs are sums of blocks):
        ``sp`` [3, C, G] (same modality) and ``sh`` [3, 3, C, G] (query modality i x gallery modality j)."""
        ops = self._gemm_operands(unit)
        if ops["q_sp"] is not None:
            torch.bmm(ops["q_sp"][rows].transpose(0, 1), ops["g_sp"], out=out["sp"])
        if ops["q_sh"] is not None:
            q, g = ops["q_sh"][rows].transpose(0, 1), ops["g_sh"]  # [3, C, D], [3, D, G]
            # per query modality, so the gallery operand is never copied to broadcast it (matmul would)
            for i, q_i in enumerate(q):
                torch.bmm(q_i.expand(len(g), -1, -1), g, out=out["sh"][i])
        return {k: v for k, v in out.items() if k != "dist"}

    def _blocks(
        self, plan: PairPlan, rows: slice, dots: dict[str, Tensor]
    ) -> Iterator[tuple[str, Tensor, Tensor, Tensor]]:
        """(kind, q.g dot [C, G], |q|^2 [C], |g|^2 [G]) of every compared block of the plan."""
        for m in plan.sp:
            yield "sp", dots["sp"][m], self._q_sq["sp"][rows, m], self._g_sq["sp"][:, m]
        for i, j in plan.sh:
            yield "sh", dots["sh"][i, j], self._q_sq["sh"][rows, i], self._g_sq["sh"][:, j]

    def _compose(
        self, plan: PairPlan, mode: str, rows: slice, dots: dict[str, Tensor], out: Tensor
    ) -> Tensor:
        """The plan's distance chunk, written into ``out`` one pass per block."""
        blocks = list(self._blocks(plan, rows, dots))
        if mode in CONCAT_MODES:  # one cosine between the two concatenated vectors
            out.copy_(blocks[0][1])
            for block in blocks[1:]:
                out.add_(block[1])
            q_norm = sum(b[2] for b in blocks).sqrt().clamp_min(_EPS)
            g_norm = sum(b[3] for b in blocks).sqrt().clamp_min(_EPS)
            return out.mul_((-2.0 / q_norm)[:, None]).div_(g_norm[None, :]).add_(2.0)
        # paper: the products are cosines; 1 - (mean sp cosine + mean sh cosine) / 2
        kinds = [[dot for k, dot, _, _ in blocks if k == kind] for kind in ("sp", "sh")]
        kinds = [cosines for cosines in kinds if cosines]
        out.fill_(1.0)
        for cosines in kinds:
            for cos in cosines:
                out.add_(cos, alpha=-1.0 / (len(cosines) * len(kinds)))
        return out


def _sq_norms(x: Tensor) -> Tensor:
    return x.float().square().sum(-1)
