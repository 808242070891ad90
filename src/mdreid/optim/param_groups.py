"""Per-parameter learning rates of the official recipe (docs/method.md §4.3).

The official code walks ``named_parameters()`` and applies these rules in order, each overriding the last:
default BASE_LR; names containing ``bias`` get ``bias_lr_factor`` x BASE_LR; anything inside the tower
(``MDReIDNet.ENCODER_PREFIX``, CLIP's or your own) gets ``backbone_lr`` (its biases too); the positional embedding and an untied shared token go back to
BASE_LR. Weight decay is coupled L2 (Adam, not AdamW) on every parameter. Parameters with
``requires_grad=False`` (the frozen BNNeck biases) are left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from torch import nn

from mdreid.models.mdreid_net import MDReIDNet


@dataclass(frozen=True)
class OptimConfig:
    """The ``model.optim`` section: learning rates and weight decay, applied per parameter by ``lr_and_decay``."""

    base_lr: float = 3.5e-4
    backbone_lr: float = 5.0e-6
    bias_lr_factor: float = 2.0
    weight_decay: float = 1.0e-4
    weight_decay_bias: float = 1.0e-4
    base_lr_keys: Sequence[str] = ("positional_embedding", "shared_token")

    def lr_and_decay(self, name: str) -> tuple[str, float, float]:
        """(group name, lr, weight decay) of one parameter, by its name."""
        is_bias = "bias" in name
        group, lr = ("head_bias", self.base_lr * self.bias_lr_factor) if is_bias else ("head", self.base_lr)
        if name.startswith(MDReIDNet.ENCODER_PREFIX):
            group, lr = "encoder", self.backbone_lr
        if any(k in name for k in self.base_lr_keys):
            group, lr = "token_pos", self.base_lr
        return group, lr, self.weight_decay_bias if is_bias else self.weight_decay


def build_param_groups(named_params: Iterable[tuple[str, nn.Parameter]], rules: OptimConfig) -> list[dict]:
    """Group trainable parameters by (lr, weight decay); each group keeps a readable ``name``."""
    groups: dict[tuple[str, float, float], dict] = {}
    for name, param in named_params:
        if not param.requires_grad:
            continue
        key = rules.lr_and_decay(name)
        group = groups.setdefault(
            key, {"name": key[0], "lr": key[1], "weight_decay": key[2], "params": [], "param_names": []}
        )
        group["params"].append(param)
        group["param_names"].append(name)
    return list(groups.values())
