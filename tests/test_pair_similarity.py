"""PairDistances against explicit constructions: the official vectors, the paper's Eqs. 3-10, presence."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mdreid.metrics import PairDistances, plan_pair
from mdreid.modalities import SUBSETS, all_pairs, subset_indices
from mdreid.process.errors import MDReIDError

R, N, T = 0, 1, 2
NQ, NG, D = 5, 7, 8


@pytest.fixture(scope="module")
def feats():
    g = torch.Generator().manual_seed(0)
    # different norms per block, so that the weighting of blocks inside one normalisation matters
    scale = torch.tensor([1.0, 2.0, 0.5]).view(1, 3, 1)
    make = lambda n: torch.randn(n, 3, D, generator=g, dtype=torch.float64) * scale  # noqa: E731
    return {"q_sp": make(NQ), "q_sh": make(NQ), "g_sp": make(NG), "g_sh": make(NG)}


def distances(feats, sp=True, q_present=None, g_present=None, **kw) -> PairDistances:
    return PairDistances(
        feats["q_sp"] if sp else None,
        feats["q_sh"],
        torch.ones(NQ, 3, dtype=torch.bool) if q_present is None else q_present,
        feats["g_sp"] if sp else None,
        feats["g_sh"],
        torch.ones(NG, 3, dtype=torch.bool) if g_present is None else g_present,
        **kw,
    )


def official_distance(q_blocks, g_blocks):
    """Concatenate, L2-normalise as a whole, squared Euclidean distance (the official evaluator)."""
    q = F.normalize(torch.cat(q_blocks, dim=1), dim=1)
    g = F.normalize(torch.cat(g_blocks, dim=1), dim=1)
    return torch.cdist(q, g).square()


def test_code_mode_equals_official_vectors_on_reported_settings(feats):
    qsp, qsh, gsp, gsh = feats["q_sp"], feats["q_sh"], feats["g_sp"], feats["g_sh"]
    # docs/method.md §5.5: the vectors the official select_feature builds (including its tail padding)
    official = {
        ("RT", "NT"): ([qsp[:, T], qsh[:, R], qsh[:, T]], [gsp[:, T], gsh[:, N], gsh[:, T]]),
        ("RT", "N"): ([qsh[:, R], qsh[:, T]], [gsh[:, N], gsh[:, N]]),
        ("R", "N"): ([qsh[:, R]], [gsh[:, N]]),
        ("R", "NT"): ([qsh[:, R], qsh[:, R]], [gsh[:, N], gsh[:, T]]),
    }
    for subset in SUBSETS:  # matched settings: [sp(Q), sh(Q)] on both sides (docs/method.md §2.6)
        idx = list(subset_indices(subset))
        official[(subset, subset)] = (
            [qsp[:, m] for m in idx] + [qsh[:, m] for m in idx],
            [gsp[:, m] for m in idx] + [gsh[:, m] for m in idx],
        )
    pd = distances(feats)
    for (q, g), (q_blocks, g_blocks) in official.items():
        expected = official_distance(q_blocks, g_blocks)
        torch.testing.assert_close(pd.distance(q, g, "code").double(), expected, atol=1e-5, rtol=0)
    assert official_distance(*official[("RNT", "RNT")]).shape == (NQ, NG)
    assert torch.cat(official[("RNT", "RNT")][0], dim=1).shape[1] == 6 * D  # the 3072-d vector at D=512


def code_mode_reference(feats, q_subset, g_subset):
    """The documented code-mode rule, written out: common sp/sh pairs plus all unmatched sh pairs."""
    q_mods, g_mods = subset_indices(q_subset), subset_indices(g_subset)
    common = [m for m in q_mods if m in g_mods]
    u_q, u_g = [m for m in q_mods if m not in common], [m for m in g_mods if m not in common]
    q_blocks = [feats["q_sp"][:, m] for m in common] + [feats["q_sh"][:, m] for m in common]
    g_blocks = [feats["g_sp"][:, m] for m in common] + [feats["g_sh"][:, m] for m in common]
    for i in u_q:
        for j in u_g:
            q_blocks.append(feats["q_sh"][:, i])
            g_blocks.append(feats["g_sh"][:, j])
    return official_distance(q_blocks, g_blocks)


def test_code_mode_all_49_pairs_in_chunks(feats):
    pd = distances(feats, chunk_size=2)
    for q, g in all_pairs():
        torch.testing.assert_close(
            pd.distance(q, g).double(), code_mode_reference(feats, q, g), atol=1e-5, rtol=0
        )


def test_code_mode_plans():
    plan = plan_pair("RNT", "RN", "code")
    assert (plan.sp, plan.sh) == ((R, N), ((R, R), (N, N)))  # the query's T is not used
    assert plan_pair("RT", "N", "code").sh == ((R, N), (T, N))
    assert plan_pair("N", "RT", "code").sh == ((N, R), (N, T))
    plan = plan_pair("RT", "NT", "code", has_sp=False)
    assert (plan.sp, plan.sh) == ((), ((T, T), (R, N)))
    assert plan_pair("RT", "N", "paper").sh == ((R, N), (T, N))
    assert plan_pair("RN", "RT", "paper").sh == ((R, R), (R, T), (N, R), (N, T))


def test_sp_none_uses_shared_blocks_only(feats):
    pd = distances(feats, sp=False)
    expected = official_distance(
        [feats["q_sh"][:, m] for m in (R, N, T)], [feats["g_sh"][:, m] for m in (R, N, T)]
    )
    torch.testing.assert_close(pd.distance("RNT", "RNT").double(), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        pd.distance("RT", "NT").double(),
        official_distance(
            [feats["q_sh"][:, T], feats["q_sh"][:, R]], [feats["g_sh"][:, T], feats["g_sh"][:, N]]
        ),
        atol=1e-5,
        rtol=0,
    )


def test_common_mode_compares_the_common_modalities_or_else_every_cross_pair(feats):
    """One feature per modality (stored as sh): RT->NT compares T alone (code mode adds R<->N), R->NT has no
    common modality and compares R with N and T; everywhere else the plan is code mode's."""
    pd = distances(feats, sp=False)
    q, g = feats["q_sh"], feats["g_sh"]
    expected = {
        ("RT", "NT"): ([q[:, T]], [g[:, T]]),
        ("RNT", "N"): ([q[:, N]], [g[:, N]]),
        ("RN", "RT"): ([q[:, R]], [g[:, R]]),
        ("R", "NT"): ([q[:, R], q[:, R]], [g[:, N], g[:, T]]),
        ("RT", "N"): ([q[:, R], q[:, T]], [g[:, N], g[:, N]]),
    }
    for (q_subset, g_subset), (q_blocks, g_blocks) in expected.items():
        torch.testing.assert_close(
            pd.distance(q_subset, g_subset, "common").double(),
            official_distance(q_blocks, g_blocks),
            atol=1e-5,
            rtol=0,
        )
    differ = set()
    for q_subset, g_subset in all_pairs():
        common, code = plan_pair(q_subset, g_subset, "common"), plan_pair(q_subset, g_subset, "code")
        if common != code:
            differ.add((q_subset, g_subset))
            assert set(common.sh) < set(code.sh) and all(i == j for i, j in common.sh)
    assert differ == {("RT", "NT"), ("NT", "RT"), ("RN", "NT"), ("NT", "RN"), ("RN", "RT"), ("RT", "RN")}
    # decoupled features: the common modalities' specific and shared blocks, never a cross pair
    plan = plan_pair("RT", "NT", "common")
    assert (plan.sp, plan.sh) == ((T,), ((T, T),))


def test_paper_mode_equals_direct_loop(feats):
    pd = distances(feats)
    cos = lambda a, b: float(F.cosine_similarity(a, b, dim=0))  # noqa: E731
    for q_subset, g_subset in all_pairs():
        q_mods, g_mods = subset_indices(q_subset), subset_indices(g_subset)
        common = [m for m in q_mods if m in g_mods]
        got = pd.distance(q_subset, g_subset, "paper")
        for a in range(NQ):
            for b in range(NG):
                sim_sh = sum(cos(feats["q_sh"][a, i], feats["g_sh"][b, j]) for i in q_mods for j in g_mods)
                sim = sim_sh / (len(q_mods) * len(g_mods))
                if common:
                    sim_sp = sum(cos(feats["q_sp"][a, m], feats["g_sp"][b, m]) for m in common) / len(common)
                    sim = (sim_sp + sim) / 2
                assert float(got[a, b]) == pytest.approx(1 - sim, abs=1e-5), (q_subset, g_subset, a, b)


def test_missing_modalities_give_inf(feats):
    q_present = torch.ones(NQ, 3, dtype=torch.bool)
    q_present[1, T] = False
    g_present = torch.ones(NG, 3, dtype=torch.bool)
    g_present[4, N] = False
    pd = distances(feats, q_present=q_present, g_present=g_present)
    dist = pd.distance("RT", "NT")
    assert torch.isinf(dist[1]).all()  # query lacks T: dropped
    assert torch.isinf(dist[:, 4]).all()  # gallery item lacks N: excluded
    assert torch.isfinite(dist[[0, 2, 3, 4]][:, [0, 1, 2, 3, 5, 6]]).all()
    assert torch.isfinite(pd.distance("R", "R")).all()  # neither needs the absent modalities
    assert pd.query_mask("RT").tolist() == [True, False, True, True, True]


def test_low_precision_features_are_accepted(feats):
    half = {k: v.half() for k, v in feats.items()}
    torch.testing.assert_close(
        distances(half).distance("RT", "NT").double(),
        code_mode_reference(feats, "RT", "NT"),
        atol=5e-3,
        rtol=0,
    )


def test_bad_inputs_raise(feats):
    with pytest.raises(MDReIDError, match="code, paper"):
        plan_pair("R", "N", "cosine")
    with pytest.raises(MDReIDError, match="no features"):
        plan_pair("R", "N", "code", has_sh=False)
    ok = torch.ones(NQ, 3, dtype=torch.bool)
    with pytest.raises(MDReIDError, match="both"):
        PairDistances(
            feats["q_sp"], feats["q_sh"], ok, None, feats["g_sh"], torch.ones(NG, 3, dtype=torch.bool)
        )
    with pytest.raises(MDReIDError, match="g_present"):
        PairDistances(None, feats["q_sh"], ok, None, feats["g_sh"], torch.ones(NG, 3))
