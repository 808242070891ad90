"""Per-parameter learning rates follow the official rules (docs/method.md §4.3)."""

from __future__ import annotations

import torch
from torch import nn

from mdreid.optim.param_groups import OptimConfig, build_param_groups


class Toy(nn.Module):
    """Parameter names as in ``MDReIDNet``: the encoder under ``mdl.encoder.``, the rest outside it."""

    def __init__(self) -> None:
        super().__init__()
        self.mdl = nn.Module()
        self.mdl.encoder = nn.Module()
        self.mdl.encoder.conv1 = nn.Linear(2, 2)  # weight + bias inside the encoder
        self.mdl.encoder.positional_embedding = nn.Parameter(torch.zeros(3, 2))
        self.mdl.shared_token = nn.Parameter(torch.zeros(2))
        self.mdl.cv_embed = nn.Parameter(torch.zeros(4, 1, 2))
        self.neck = nn.BatchNorm1d(2)
        self.neck.bias.requires_grad_(False)
        self.classifier = nn.Linear(2, 5, bias=False)


def _by_name(groups: list[dict]) -> dict[str, tuple[float, float]]:
    return {n: (g["lr"], g["weight_decay"]) for g in groups for n in g["param_names"]}


def test_official_lr_rules() -> None:
    rules = OptimConfig(
        base_lr=1e-3, backbone_lr=1e-5, bias_lr_factor=2.0, weight_decay=1e-4, weight_decay_bias=5e-4
    )
    lrs = _by_name(build_param_groups(Toy().named_parameters(), rules))
    assert lrs["mdl.encoder.conv1.weight"] == (1e-5, 1e-4)
    assert lrs["mdl.encoder.conv1.bias"] == (1e-5, 5e-4)  # the encoder rule overrides the bias rule
    assert lrs["mdl.encoder.positional_embedding"] == (1e-3, 1e-4)
    assert lrs["mdl.shared_token"] == (1e-3, 1e-4)  # an untied shared token trains at BASE_LR
    assert lrs["mdl.cv_embed"] == (1e-3, 1e-4)
    assert lrs["neck.weight"] == (1e-3, 1e-4)
    assert lrs["classifier.weight"] == (1e-3, 1e-4)
    assert "neck.bias" not in lrs  # frozen BNNeck bias is not optimised


def test_bias_outside_encoder_gets_factor() -> None:
    model = nn.Sequential(nn.Linear(2, 2))
    lrs = _by_name(build_param_groups(model.named_parameters(), OptimConfig(base_lr=1e-3)))
    assert lrs["0.bias"][0] == 2e-3 and lrs["0.weight"][0] == 1e-3


def test_every_trainable_parameter_in_exactly_one_group() -> None:
    model = Toy()
    groups = build_param_groups(model.named_parameters(), OptimConfig())
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == sum(1 for p in model.parameters() if p.requires_grad)
