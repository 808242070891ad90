"""One vector per item and side such that the inner product IS the metric's similarity of a modality pair.

The any-to-any distance of a pair Q -> G (``metrics.pair_similarity``) compares blocks chosen by both
subsets, so a gallery item has no single embedding: it has one per pair. Both rules factor into an inner
product of two pair-specific vectors, which is what a FAISS inner-product index searches:

* ``code``: the cosine of the concatenated blocks. The shared blocks of the unmatched modalities enter as all
  pairs ``sh_q^i . sh_g^j`` (i in U_q, j in U_g), whose sum is ``(sum_i sh_q^i) . (sum_j sh_g^j)``. So
  ``v_q = [sp_q^C, sh_q^C, sum_{U_q} sh_q] / n_q`` and ``v_g = [sp_g^C, sh_g^C, sum_{U_g} sh_g] / n_g``, where
  ``n`` is the norm of the side's full concatenation (an unmatched block counted once per partner:
  ``n_g^2 = |sp_g^C|^2 + |sh_g^C|^2 + |U_q| * sum_{U_g} |sh_g^j|^2``). Then ``v_q . v_g = cos`` and the
  metric's distance is ``2 - 2 v_q . v_g``.
* ``paper``: each block is normalised on its own; ``Sim = (mean_C cos(sp) + mean_{QxG} cos(sh)) / 2`` (the
  shared term alone without a common modality or without sp), and the mean over all Q x G shared pairs is
  ``(sum_i sh^_q^i) . (sum_j sh^_g^j) / (|Q| |G|)``. The weights go on the query side; the distance is
  ``1 - v_q . v_g``.

Vectors are float32, on the features' device; the block layout is fixed per pair, so any two items of the
pair's sides are comparable. Items lacking a modality of their side have no vector (``keep`` is False).
"""

from __future__ import annotations

import torch
from torch import Tensor

from mdreid.metrics.pair_similarity import SIMILARITY_MODES, plan_pair
from mdreid.modalities import subset_indices
from mdreid.process.errors import MDReIDError

_EPS = 1e-12  # as the metric: a zero vector is divided by eps instead of 0


def _unit(x: Tensor) -> Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(_EPS)


def pair_vectors(
    sp: Tensor | None,
    sh: Tensor | None,
    present: Tensor,
    q_subset: str,
    g_subset: str,
    side: str,
    mode: str = "code",
) -> tuple[Tensor, Tensor]:
    """``(vectors [K, D_pair], keep [N])``: the ``side`` (``"query"`` or ``"gallery"``) vectors of the pair
    ``q_subset -> g_subset`` for the K items that have every modality of that side's subset."""
    if side not in ("query", "gallery"):
        raise MDReIDError(f"pair_vectors: side must be 'query' or 'gallery', got {side!r}")
    if mode not in SIMILARITY_MODES:
        raise MDReIDError(f"unknown similarity mode {mode!r}: use one of {', '.join(SIMILARITY_MODES)}")
    plan = plan_pair(q_subset, g_subset, mode, sp is not None, sh is not None)
    query = side == "query"
    keep = present[:, list(subset_indices(q_subset if query else g_subset))].all(dim=1)
    sp = None if sp is None else sp[keep].float()
    sh = None if sh is None else sh[keep].float()
    own = plan.q_mods if query else plan.g_mods
    if mode == "code":
        matched = [i for i, j in plan.sh if i == j]
        unmatched = sorted({(i if query else j) for i, j in plan.sh if i != j})
        partners = len({(j if query else i) for i, j in plan.sh if i != j})
        blocks = [sp[:, m] for m in plan.sp] + [sh[:, m] for m in matched]
        sq_norm = sum(b.square().sum(-1) for b in blocks) if blocks else 0.0
        if unmatched:
            blocks.append(sh[:, unmatched].sum(dim=1))
            sq_norm = sq_norm + partners * sh[:, unmatched].square().sum(dim=(1, 2))
        vectors = torch.cat(blocks, dim=1) / torch.as_tensor(sq_norm).sqrt().clamp_min(_EPS)[:, None]
        return vectors, keep
    blocks, kinds = [], int(bool(plan.sp)) + int(bool(plan.sh))
    if plan.sp:
        scale = 1.0 / (kinds * len(plan.sp)) if query else 1.0
        blocks += [_unit(sp[:, m]) * scale for m in plan.sp]
    if plan.sh:
        scale = 1.0 / (kinds * len(plan.q_mods) * len(plan.g_mods)) if query else 1.0
        blocks.append(_unit(sh[:, list(own)]).sum(dim=1) * scale)
    return torch.cat(blocks, dim=1), keep


def similarity_to_distance(score: Tensor, mode: str) -> Tensor:
    """The metric's distance of an inner product of two ``pair_vectors``."""
    return 2.0 - 2.0 * score if mode == "code" else 1.0 - score
