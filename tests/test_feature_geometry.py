"""Cosine geometry of features: the collapse check behind the ablation's diagnostics."""

from __future__ import annotations

import pytest
import torch

from analysis.feature_geometry import cosine_summary, feature_geometry
from mdreid.modalities import MODALITIES
from mdreid.models.mdreid_net import MDReIDNet


def test_collinear_features_read_one_and_orthogonal_ones_zero() -> None:
    common = torch.randn(1, 1, 16)
    collapsed = common + 1e-4 * torch.randn(5, 3, 16)
    out = cosine_summary(collapsed, collapsed + 1e-4 * torch.randn(5, 3, 16))
    assert out["mean_cosine"] == pytest.approx(1.0, abs=1e-5)
    assert out["sp_sh_cosine"] == pytest.approx(1.0, abs=1e-5)

    eye = torch.eye(6)  # one sample: sp = e0, e1, e2; sh = e3, e3, e3 (ROL's target geometry)
    sp, sh = eye[:3][None], eye[[3, 3, 3]][None]
    out = cosine_summary(sp, sh)
    assert out["sp_sh_cosine"] == 0.0 and out["sh_cross_modal_cosine"] == 1.0
    assert out["mean_cosine"] == pytest.approx(3 / 15)  # 3 equal sh pairs among the 15 pairs


def test_mean_cosine_equals_the_pairwise_mean_without_self_pairs() -> None:
    sp = torch.randn(4, 3, 8, generator=torch.Generator().manual_seed(0))
    unit = torch.nn.functional.normalize(sp.flatten(0, 1).double(), dim=-1)
    cos = unit @ unit.T
    expected = (cos.sum() - cos.diagonal().sum()) / (12 * 11)
    assert cosine_summary(sp, None) == {"mean_cosine": pytest.approx(float(expected))}


def test_feature_geometry_of_a_net_uses_complete_samples_and_restores_train_mode() -> None:
    torch.manual_seed(0)
    vision = {"width": 32, "layers": 1, "heads": 2, "patch_size": 8}
    net = MDReIDNet({"name": "ViT-B-16", "vision": vision, "embed_dim": 16}, 5, 2, (32, 16)).train()
    batch = {m: torch.randn(4, 3, 32, 16) for m in MODALITIES}
    batch["present"] = torch.tensor([[1, 1, 1], [1, 0, 1], [1, 1, 1], [1, 1, 1]], dtype=torch.bool)
    batch["camid"] = torch.tensor([0, 1, 0, 1])
    out = feature_geometry(net, [batch])
    assert net.training  # evaluated in eval mode, handed back in train mode
    complete = batch["present"].all(1)
    sp, sh = net.eval().extract(
        {m: batch[m][complete] for m in MODALITIES}, batch["present"][complete], batch["camid"][complete]
    )
    assert out == pytest.approx(cosine_summary(sp, sh))
