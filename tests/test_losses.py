"""Losses against hand-computed values and independent, official-style reference implementations."""

from __future__ import annotations

import math

import pytest
import torch

from mdreid.losses import (
    LossConfig,
    MDReIDObjective,
    batch_hard_triplet,
    euclidean_dist,
    id_loss,
    knowledge_discrepancy_loss,
    representation_orthogonality_loss,
    rol_target,
)
from mdreid.models.net_output import NetOutput
from mdreid.process.errors import MDReIDError

# ----------------------------------------------------------------------------- official-style references
# Written after docs/method.md §3 in the official code's shape (loops, PK reshape, explicit detach),
# sharing no code with mdreid.losses.


def ref_ce_ls(logits: torch.Tensor, labels: torch.Tensor, eps: float = 0.1) -> torch.Tensor:
    log_probs = logits.log_softmax(1)
    onehot = torch.zeros_like(log_probs).scatter_(1, labels.unsqueeze(1), 1.0)
    targets = (1 - eps) * onehot + eps / logits.shape[1]
    return (-targets * log_probs).mean(0).sum()


def ref_triplet(feat: torch.Tensor, labels: torch.Tensor):
    n = feat.shape[0]
    xx = feat.pow(2).sum(1, keepdim=True).expand(n, n)
    dist = (xx + xx.t() - 2 * feat @ feat.t()).clamp(min=1e-12).sqrt()
    is_pos = labels.expand(n, n).eq(labels.expand(n, n).t())
    d_ap = dist[is_pos].contiguous().view(n, -1).max(1).values
    d_an = dist[~is_pos].contiguous().view(n, -1).min(1).values
    loss = torch.nn.SoftMarginLoss()(d_an - d_ap, torch.ones_like(d_an))
    return loss, d_ap, d_an


def ref_rol(sp: torch.Tensor, sh: torch.Tensor, order: int = 2) -> torch.Tensor:
    target = torch.tensor(
        [
            [1.0, 0, 0, 0, 0, 0],
            [0, 1, 0, 0, 0, 0],
            [0, 0, 1, 0, 0, 0],
            [0, 0, 0, 1, 1, 1],
            [0, 0, 0, 1, 1, 1],
            [0, 0, 0, 1, 1, 1],
        ]
    )
    total = 0.0
    for i in range(sp.shape[0]):
        m = torch.cat([sp[i], sh[i]], dim=0).unsqueeze(0)  # 1 x 6 x D
        unit = m / m.norm(dim=-1, keepdim=True)
        sim = torch.bmm(unit, unit.permute(0, 2, 1))
        if order == 2:
            norm = torch.pow(torch.sum(torch.pow(sim, 2), 2) + 1e-6, 0.5).unsqueeze(2).expand_as(sim)
            sim = torch.div(sim, norm)
            sim = torch.matmul(sim, sim.transpose(1, 2))
        total = total + ((sim[0] - target) ** 2).sum() / 36
    return total / sp.shape[0]


def ref_kdl(sp: torch.Tensor, sh: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    f_ss = torch.cat([sp[:, 0], sh[:, 0], sp[:, 1], sh[:, 1], sp[:, 2], sh[:, 2]], dim=-1)
    f_sp = torch.cat([sp[:, 0], sp[:, 1], sp[:, 2]], dim=-1).detach()
    f_sh = torch.cat([sh[:, 0], sh[:, 1], sh[:, 2]], dim=-1).detach()
    _, ap_ss, an_ss = ref_triplet(f_ss, labels)
    _, ap_sp, an_sp = ref_triplet(f_sp, labels)
    _, ap_sh, an_sh = ref_triplet(f_sh, labels)
    p_ss, n_ss = ap_ss.max(), an_ss.min()
    p_sp, n_sp, p_sh, n_sh = (float(v) for v in (ap_sp.max(), an_sp.min(), ap_sh.max(), an_sh.min()))
    d_p = p_ss / (p_ss + p_sp + p_sh)
    d_n = n_ss / (n_ss + n_sp + n_sh)
    return torch.abs(d_p - 0) + torch.abs(d_n - 1)


def pk_batch(p: int = 3, k: int = 2, dim: int = 8, classes: int = 4, seed: int = 0):
    """Features [B,3,D] (leaf tensors), logits and PK labels."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(p).repeat_interleave(k)
    sp = torch.randn(p * k, 3, dim, generator=g).requires_grad_()
    sh = torch.randn(p * k, 3, dim, generator=g).requires_grad_()
    logits_sp = torch.randn(p * k, 3, classes, generator=g).requires_grad_()
    logits_sh = torch.randn(p * k, classes, generator=g).requires_grad_()
    return sp, sh, logits_sp, logits_sh, labels


# ------------------------------------------------------------------------------------------- ID loss


def test_id_loss_matches_official_label_smoothing() -> None:
    logits, labels = torch.randn(5, 7), torch.tensor([0, 3, 6, 3, 1])
    assert torch.allclose(id_loss(logits, labels, 0.1), ref_ce_ls(logits, labels, 0.1), atol=1e-6)
    assert math.isclose(float(id_loss(torch.zeros(2, 4), torch.tensor([1, 2]))), math.log(4), rel_tol=1e-6)


# ------------------------------------------------------------------------------------------- triplet


@pytest.mark.parametrize("seed", range(20))
def test_euclidean_dist_and_clamp(seed: int) -> None:
    """Off the diagonal the official expansion matches cdist; on it, the rounding error of |x|^2 + |x|^2 -
    2 x.x (about 1e-7) comes out of the square root as up to a few 1e-4, so it is bounded, not compared."""
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(seed))
    dist = euclidean_dist(x, x)
    off = ~torch.eye(4, dtype=torch.bool)
    assert torch.allclose(dist[off], torch.cdist(x, x)[off], atol=1e-4)
    assert torch.all(dist.diagonal() <= 1e-2) and torch.all(dist >= 1e-6)


def test_triplet_hand_example() -> None:
    feats, labels = torch.tensor([[0.0], [1.0], [3.0], [7.0]]), torch.tensor([0, 0, 1, 1])
    result = batch_hard_triplet(feats, labels)
    assert torch.allclose(result.d_ap, torch.tensor([1.0, 1.0, 4.0, 4.0]), atol=1e-5)
    assert torch.allclose(result.d_an, torch.tensor([3.0, 2.0, 2.0, 6.0]), atol=1e-5)
    expected = sum(math.log1p(math.exp(v)) for v in (-2.0, -1.0, 2.0, -2.0)) / 4
    assert math.isclose(float(result.loss), expected, rel_tol=1e-5)


def test_triplet_matches_brute_force_loop() -> None:
    g = torch.Generator().manual_seed(1)
    feats, labels = torch.randn(8, 5, generator=g), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    losses = []
    for a in range(8):
        dists = [float(torch.sqrt(((feats[a] - feats[b]) ** 2).sum())) for b in range(8)]
        d_ap = max(d for b, d in enumerate(dists) if labels[b] == labels[a])
        d_an = min(d for b, d in enumerate(dists) if labels[b] != labels[a])
        losses.append(math.log1p(math.exp(d_ap - d_an)))
    assert math.isclose(float(batch_hard_triplet(feats, labels).loss), sum(losses) / 8, rel_tol=1e-5)
    ref_loss, _, _ = ref_triplet(feats, labels)
    assert torch.allclose(batch_hard_triplet(feats, labels).loss, ref_loss, atol=1e-6)


def test_triplet_without_negatives_or_positives() -> None:
    feats = torch.randn(3, 4, requires_grad=True)
    alone = batch_hard_triplet(feats, torch.tensor([5, 5, 5]))
    assert float(alone.loss.detach()) == 0.0 and torch.isinf(alone.d_an).all()
    alone.loss.backward()
    assert torch.isfinite(feats.grad).all()  # the masked mean must not turn inf into NaN gradients
    single = batch_hard_triplet(feats, torch.tensor([0, 1, 1]))
    assert single.d_ap[0] <= 1e-3  # no other positive: the anchor itself (official behaviour)


# ----------------------------------------------------------------------------------------------- ROL


def _target_features(scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Features whose cosine matrix is exactly A: orthogonal specific rows, one shared direction."""
    eye = torch.eye(8)
    sp = torch.stack([eye[0], eye[1], eye[2]]).unsqueeze(0) * scale[:3, None]
    sh = torch.stack([eye[3], eye[3], eye[3]]).unsqueeze(0) * scale[3:, None]
    return sp, sh


@pytest.mark.parametrize("order", [1, 2])
def test_rol_target_is_a_fixed_point(order: int) -> None:
    sp, sh = _target_features(torch.tensor([1.0, 2.0, 0.5, 3.0, 0.7, 1.2]))
    assert float(representation_orthogonality_loss(sp, sh, order=order)) < 1e-10
    assert float(representation_orthogonality_loss(sp + 0.3, sh, order=order)) > 1e-3
    expected = torch.tensor(
        [[1, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0]] + [[0, 0, 0, 1, 1, 1]] * 3
    )
    assert torch.equal(rol_target(3), expected.float())


@pytest.mark.parametrize("order", [1, 2])
def test_rol_matches_official_loop(order: int) -> None:
    sp, sh, *_ = pk_batch(seed=2)
    ours = representation_orthogonality_loss(sp, sh, order=order)
    ref = ref_rol(sp, sh, order=order)
    assert torch.allclose(ours, ref, atol=1e-6)
    grads = torch.autograd.grad(ours, (sp, sh))
    ref_grads = torch.autograd.grad(ref, (sp, sh))
    for a, b in zip(grads, ref_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("order", [1, 2])
def test_rol_with_missing_modalities_uses_the_present_sub_block(order: int) -> None:
    g = torch.Generator().manual_seed(3)
    sp, sh = torch.randn(2, 3, 8, generator=g), torch.randn(2, 3, 8, generator=g)
    present = torch.tensor([[True, False, True], [True, True, True]])
    ours = representation_orthogonality_loss(sp, sh, present, order=order)

    # sample 0 by hand: rows sp_R, sp_T, sh_R, sh_T against A's matching 4x4 block, divided by 4^2
    rows = torch.stack([sp[0, 0], sp[0, 2], sh[0, 0], sh[0, 2]])
    unit = rows / rows.norm(dim=1, keepdim=True)
    sim = unit @ unit.t()
    if order == 2:
        sim = sim / (sim.pow(2).sum(1, keepdim=True) + 1e-6).sqrt()
        sim = sim @ sim.t()
    block = torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]])
    sample0 = ((sim - block) ** 2).sum() / 16
    sample1 = ref_rol(sp[1:], sh[1:], order=order)
    assert torch.allclose(ours, (sample0 + sample1) / 2, atol=1e-6)

    garbage_sp, garbage_sh = sp.clone(), sh.clone()
    garbage_sp[0, 1], garbage_sh[0, 1] = 1e3, -7.0  # absent rows must not matter
    assert torch.allclose(representation_orthogonality_loss(garbage_sp, garbage_sh, present, order), ours)


# ----------------------------------------------------------------------------------------------- KDL


def test_kdl_matches_official_and_detach_scope() -> None:
    sp, sh, _, _, labels = pk_batch(p=3, k=3, seed=4)
    ours = knowledge_discrepancy_loss(sp, sh, labels)
    ref = ref_kdl(sp, sh, labels)
    assert torch.allclose(ours, ref, atol=1e-6)
    grads = torch.autograd.grad(ours, (sp, sh))
    ref_grads = torch.autograd.grad(ref, (sp, sh))
    for a, b in zip(grads, ref_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-6)
        assert a.abs().sum() > 0  # gradient reaches both sp and sh through f_ss

    # The check is sensitive: letting gradient through the sp/sh scalars changes it.
    f_sp, f_sh = sp.flatten(1), sh.flatten(1)
    f_ss = torch.stack([sp, sh], dim=2).flatten(1)
    parts = [ref_triplet(f, labels) for f in (f_ss, f_sp, f_sh)]
    (p_ss, n_ss), (p_sp, n_sp), (p_sh, n_sh) = ((d_ap.max(), d_an.min()) for _, d_ap, d_an in parts)
    leaky = (p_ss / (p_ss + p_sp + p_sh)).abs() + (n_ss / (n_ss + n_sp + n_sh) - 1).abs()
    leaky_grad = torch.autograd.grad(leaky, sp)[0]
    assert not torch.allclose(leaky_grad, grads[0], atol=1e-6)


def test_kdl_with_missing_modalities_uses_complete_samples() -> None:
    sp, sh, _, _, labels = pk_batch(p=3, k=3, seed=5)
    present = torch.ones(9, 3, dtype=torch.bool)
    present[3:6, 2] = False  # identity 1 lacks TIR: the complete samples stay a PK batch
    complete = present.all(1)
    ours = knowledge_discrepancy_loss(sp, sh, labels, present)
    assert torch.allclose(ours, ref_kdl(sp[complete], sh[complete], labels[complete]), atol=1e-6)

    present[:, 0] = False  # nobody complete: zero, still differentiable
    empty = knowledge_discrepancy_loss(sp, sh, labels, present)
    assert float(empty.detach()) == 0.0
    empty.backward()


def test_kdl_without_any_negative_pair_is_zero_with_finite_gradients() -> None:
    sp, sh, _, _, _ = pk_batch(p=3, k=3, seed=6)
    loss = knowledge_discrepancy_loss(sp, sh, torch.zeros(9, dtype=torch.long))  # one identity
    assert float(loss.detach()) == 0.0
    grads = torch.autograd.grad(loss, (sp, sh))
    assert all(torch.isfinite(g).all() for g in grads)


# ----------------------------------------------------------------------------------------- objective


def decoupled_output(sp, sh, logits_sp, logits_sh) -> NetOutput:
    """The network output of a batch with every modality present."""
    present = torch.ones(sp.shape[0], 3, dtype=torch.bool)
    return NetOutput(
        decoupled=True,
        sp=sp,
        sh=sh,
        present=present,
        sh_cat=sh.flatten(1),
        logits_sp=logits_sp,
        logits_sh=logits_sh,
    )


def test_objective_equals_official_total_with_all_modalities() -> None:
    sp, sh, logits_sp, logits_sh, labels = pk_batch(p=3, k=2, seed=6)
    terms = MDReIDObjective()(decoupled_output(sp, sh, logits_sp, logits_sh), labels)

    base = 0.0
    for m in range(3):
        base = base + 0.25 * ref_ce_ls(logits_sp[:, m], labels) + ref_triplet(sp[:, m], labels)[0]
    base = base + 3 * (0.25 * ref_ce_ls(logits_sh, labels) + ref_triplet(sh.flatten(1), labels)[0])
    official = base + 1.5 * ref_rol(sp, sh) + 5.25 * ref_kdl(sp, sh, labels)

    assert torch.allclose(terms["loss"], official, atol=1e-5)
    assert torch.allclose(terms["loss"], terms["id"] + terms["triplet"] + terms["rol"] + terms["kdl"])
    assert torch.allclose(terms["rol"], 1.5 * ref_rol(sp, sh), atol=1e-6)
    assert torch.allclose(terms["kdl"], 5.25 * ref_kdl(sp, sh, labels), atol=1e-6)
    leaves = (sp, sh, logits_sp, logits_sh)
    for a, b in zip(
        torch.autograd.grad(terms["loss"], leaves), torch.autograd.grad(official, leaves), strict=True
    ):
        assert torch.allclose(a, b, atol=1e-5)


def test_objective_ignores_absent_rows() -> None:
    sp, sh, logits_sp, logits_sh, labels = pk_batch(p=3, k=2, seed=7)
    present = torch.ones(6, 3, dtype=torch.bool)
    present[0, 1] = present[3, 2] = False
    sh_cat = sh.detach().flatten(1)

    def terms(sp_in: torch.Tensor, logits_in: torch.Tensor) -> dict[str, torch.Tensor]:
        out = NetOutput(
            decoupled=True,
            sp=sp_in,
            sh=sh,
            present=present,
            sh_cat=sh_cat,
            logits_sp=logits_in,
            logits_sh=logits_sh,
        )
        return MDReIDObjective(LossConfig(rol_weight=0.0, kdl_weight=0.0))(out, labels)

    clean = terms(sp, logits_sp)
    sp_bad, logits_bad = sp.detach().clone(), logits_sp.detach().clone()
    sp_bad[0, 1], sp_bad[3, 2], logits_bad[0, 1], logits_bad[3, 2] = 50.0, -50.0, 99.0, -99.0
    dirty = terms(sp_bad, logits_bad)
    assert torch.allclose(clean["id"], dirty["id"]) and torch.allclose(clean["triplet"], dirty["triplet"])

    rows_n = present[:, 1]
    expected_id = 0.25 * (
        ref_ce_ls(logits_sp[:, 0], labels)
        + ref_ce_ls(logits_sp[rows_n, 1], labels[rows_n])
        + ref_ce_ls(logits_sp[present[:, 2], 2], labels[present[:, 2]])
        + 3 * ref_ce_ls(logits_sh, labels)
    )
    assert torch.allclose(clean["id"], expected_id, atol=1e-6)
    assert float(clean["rol"]) == 0.0 and float(clean["kdl"]) == 0.0


def test_baseline_objective_on_the_concatenation() -> None:
    sp, _, _, logits, labels = pk_batch(seed=8)
    out = NetOutput(
        decoupled=False, sp=sp, present=torch.ones(6, 3, dtype=torch.bool), feat=sp.flatten(1), logits=logits
    )
    terms = MDReIDObjective()(out, labels)
    expected = 0.25 * ref_ce_ls(logits, labels) + ref_triplet(sp.flatten(1), labels)[0]
    assert torch.allclose(terms["loss"], expected, atol=1e-6)
    assert float(terms["rol"]) == 0.0 and float(terms["kdl"]) == 0.0


def test_first_order_rol_option_and_bad_order() -> None:
    sp, sh, logits_sp, logits_sh, labels = pk_batch(seed=9)
    out = decoupled_output(sp, sh, logits_sp, logits_sh)
    terms = MDReIDObjective(LossConfig(rol_order=1))(out, labels)
    assert torch.allclose(terms["rol"], 1.5 * ref_rol(sp, sh, order=1), atol=1e-6)
    with pytest.raises(MDReIDError, match=r"^model\.loss\.rol_order=3: use one of 1 \(.*\), 2 \("):
        LossConfig(rol_order=3)


def test_objective_runs_in_fp32_under_autocast() -> None:
    sp, sh, logits_sp, logits_sh, labels = pk_batch(seed=10)
    out = decoupled_output(sp, sh, logits_sp, logits_sh)
    full = MDReIDObjective()(out, labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = MDReIDObjective()(out, labels)
    for key, value in full.items():
        assert mixed[key].dtype == torch.float32 and torch.allclose(mixed[key], value, atol=1e-6), key
