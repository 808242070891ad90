"""The full network: gather/scatter of present modalities, heads, parameter names, configs."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from conftest import compose_cfg
from mdreid.config.sections import typed_section
from mdreid.losses.loss_config import LossConfig
from mdreid.losses.objective import MDReIDObjective
from mdreid.modalities import MODALITIES
from mdreid.models.heads import BNNeckClassifier
from mdreid.models.mdreid_net import MDReIDNet, fill_absent_with_mean
from mdreid.optim.lr_schedule import ScheduleConfig
from mdreid.optim.param_groups import OptimConfig
from mdreid.process.errors import MDReIDError

TINY = {
    "name": "ViT-B-16",
    "vision": {"width": 32, "layers": 1, "heads": 2, "patch_size": 8},
    "embed_dim": 16,
}
SIZE = (32, 16)


def make_net(seed: int = 0, **kwargs) -> MDReIDNet:
    torch.manual_seed(seed)
    return MDReIDNet(backbone=TINY, num_classes=5, num_cameras=3, image_size=SIZE, **kwargs)


def batch(b: int, seed: int = 0) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = {m: torch.randn(b, 3, *SIZE, generator=g) for m in MODALITIES}
    return images, torch.arange(b) % 3


def count_encoded(net: MDReIDNet) -> list[int]:
    rows: list[int] = []
    net.mdl.register_forward_pre_hook(lambda _m, args: rows.append(args[0].shape[0]))
    return rows


@pytest.mark.parametrize(
    "present",
    [
        [[1, 0, 0], [1, 0, 0], [1, 0, 0], [1, 0, 0]],  # one modality
        [[1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 1]],  # two per sample
        [[1, 1, 1], [1, 1, 1], [1, 1, 1], [1, 1, 1]],  # all three
    ],
)
def test_forward_shapes_and_only_present_images_encoded(present: list[list[int]]) -> None:
    net = make_net().train()
    mask = torch.tensor(present, dtype=torch.bool)
    rows = count_encoded(net)
    images, cams = batch(4)
    out = net(images, mask, cams)
    assert rows == [int(mask.sum())]  # one encoder call on the present images only
    assert out.sp.shape == out.sh.shape == (4, 3, 16)
    assert out.sh_cat.shape == (4, 48) and out.logits_sh.shape == (4, 5)
    assert out.logits_sp.shape == (4, 3, 5)
    absent = ~mask
    assert out.sp[absent].abs().sum() == 0 and out.sh[absent].abs().sum() == 0
    assert out.logits_sp[absent].abs().sum() == 0
    assert (out.sp[mask].abs().sum(-1) > 0).all()
    losses = MDReIDObjective()(out, torch.tensor([0, 0, 1, 1]))
    losses["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


@pytest.mark.parametrize("present", [[[1, 0, 1], [0, 1, 0], [1, 1, 1]], [[1, 1, 1]] * 3])
def test_gather_scatter_puts_each_feature_in_its_slot(present: list[list[int]]) -> None:
    """Both paths: boolean gather/scatter, and the all-present one that only reshapes (no host syncs)."""
    net = make_net(seed=1).eval()
    images, cams = batch(3, seed=1)
    mask = torch.tensor(present, dtype=torch.bool)
    with torch.no_grad():
        sp, sh = net.extract(images, mask, cams)
        for b in range(3):
            for m, key in enumerate(MODALITIES):
                if mask[b, m]:
                    alone = net.mdl(images[key][b : b + 1], cams[b : b + 1])[0]
                    assert torch.allclose(sp[b, m], alone[0], atol=1e-5)
                    assert torch.allclose(sh[b, m], alone[1], atol=1e-5)


def test_unknown_backbone_key_is_a_config_error() -> None:
    with pytest.raises(MDReIDError, match=r"model\.backbone: unknown key\(s\) weight;"):
        MDReIDNet(backbone={**TINY, "weight": "x.pt"}, num_classes=2, num_cameras=1, image_size=SIZE)


def test_missing_modality_key_allowed_when_absent_everywhere() -> None:
    net = make_net().eval()
    images, cams = batch(2)
    del images["NI"]
    mask = torch.tensor([[1, 0, 1], [1, 0, 0]], dtype=torch.bool)
    sp, _ = net.extract(images, mask, cams)
    assert sp[:, 1].abs().sum() == 0
    with pytest.raises(ValueError, match="NI"):
        net.extract(images, torch.ones(2, 3, dtype=torch.bool), cams)
    with pytest.raises(ValueError, match="at least one present modality"):
        net.extract(images, torch.tensor([[1, 0, 0], [0, 0, 0]], dtype=torch.bool), cams)


def test_shared_concatenation_fills_absent_with_present_mean() -> None:
    feats = torch.arange(2 * 3 * 2, dtype=torch.float32).view(2, 3, 2)
    present = torch.tensor([[True, False, True], [False, True, False]])
    filled = fill_absent_with_mean(feats, present).view(2, 3, 2)
    assert torch.equal(filled[0, 1], (feats[0, 0] + feats[0, 2]) / 2)
    assert torch.equal(filled[0, 0], feats[0, 0]) and torch.equal(filled[0, 2], feats[0, 2])
    assert torch.equal(filled[1], feats[1, 1].expand(3, 2))

    net = make_net(seed=2).eval()
    images, cams = batch(2, seed=2)
    with torch.no_grad():
        out = net(images, present, cams)
    assert torch.allclose(out.sh_cat, fill_absent_with_mean(out.sh, present))


def test_baseline_network() -> None:
    net = make_net(decoupled=False).train()
    rows = count_encoded(net)
    images, cams = batch(4)
    mask = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 1, 0], [1, 1, 0]], dtype=torch.bool)
    out = net(images, mask, cams)
    assert rows == [8] and out.sh is None
    assert out.feat.shape == (4, 48) and out.logits.shape == (4, 5)
    assert torch.allclose(out.feat, fill_absent_with_mean(out.sp, mask))
    assert not hasattr(net, "heads_sp") and not any("shared_token" in n for n, _ in net.named_parameters())
    MDReIDObjective()(out, torch.tensor([0, 0, 1, 1]))["loss"].backward()
    assert net.extract(images, mask, cams)[1] is None


def test_bnneck_head_init_and_single_row_fallback() -> None:
    head = BNNeckClassifier(256, 100)
    assert not head.bn.bias.requires_grad and torch.equal(head.bn.bias, torch.zeros(256))
    assert torch.equal(head.bn.weight, torch.ones(256)) and head.classifier.bias is None
    assert 0.0009 < float(head.classifier.weight.detach().std()) < 0.0011
    head.train()
    x = torch.randn(1, 256)
    one = head(x)  # batch statistics are undefined for one row: the running ones (0, 1) are used
    assert torch.allclose(one, head.classifier(x / (1 + head.bn.eps) ** 0.5), atol=1e-6)
    assert torch.equal(head.bn.running_mean, torch.zeros(256))  # not updated by the fallback


def test_parameter_names_map_to_the_official_lr_groups() -> None:
    rules = OptimConfig()
    for tie in (True, False):
        net = make_net(tie_tokens=tie)
        names = [n for n, _ in net.named_parameters()]
        groups = {n: rules.lr_and_decay(n)[0] for n in names}
        assert names.count("mdl.encoder.class_embedding") == 1
        assert groups["mdl.encoder.class_embedding"] == "encoder"  # the tied token trains at 5e-6
        assert groups["mdl.encoder.positional_embedding"] == "token_pos"
        assert groups["mdl.cv_embed"] == "head"
        assert groups["mdl.encoder.conv1.weight"] == groups["mdl.encoder.ln_post.bias"] == "encoder"
        assert groups["heads_sp.0.classifier.weight"] == groups["head_sh.bn.weight"] == "head"
        assert ("mdl.shared_token" in groups) is (not tie)
        if not tie:
            assert groups["mdl.shared_token"] == "token_pos"
        encoder = {n for n in names if n.startswith(MDReIDNet.ENCODER_PREFIX)}
        assert {n for n, g in groups.items() if g == "encoder"} == encoder - {
            "mdl.encoder.positional_embedding"
        }


def _compose_model(name: str) -> OmegaConf:
    model = compose_cfg(f"model/{name}", ["model/backbone=tiny"]).model
    return OmegaConf.merge({"data": {"image_size": [32, 16]}, "model": model})


@pytest.mark.parametrize(("name", "decoupled"), [("mdreid", True), ("baseline", False)])
def test_model_configs_build_the_net_and_objective(name: str, decoupled: bool) -> None:
    cfg = OmegaConf.to_container(_compose_model(name), resolve=True)["model"]
    assert cfg["_target_"] == "mdreid.module.ReIDModule"
    assert cfg["mdl"]["decoupled"] is decoupled and cfg["mdl"]["tie_tokens"] is True
    assert cfg["backbone"]["vision"]["patch_size"] == 8 and cfg["backbone"]["weights"] is None
    net = MDReIDNet(
        backbone=cfg["backbone"],
        num_classes=4,
        num_cameras=2,
        image_size=cfg["image_size"],
        sie_coe=cfg["sie_coe"],
        tie_tokens=cfg["mdl"]["tie_tokens"],
        decoupled=cfg["mdl"]["decoupled"],
    )
    objective = MDReIDObjective(typed_section(LossConfig, cfg["loss"], "model.loss"))
    typed_section(OptimConfig, cfg["optim"], "model.optim")
    typed_section(ScheduleConfig, cfg["schedule"], "model.schedule")
    images, cams = batch(4)
    out = net(images, torch.ones(4, 3, dtype=torch.bool), cams % 2)
    terms = objective(out, torch.tensor([0, 0, 1, 1]))
    assert torch.isfinite(terms["loss"])
    assert (float(terms["rol"].detach()) > 0) is decoupled


def test_official_defaults_in_mdreid_config() -> None:
    cfg = _compose_model("mdreid").model
    assert cfg.backbone.name == "ViT-B-16" and cfg.backbone.quick_gelu is True
    assert dict(cfg.loss) == {
        "id_weight": 0.25,
        "label_smoothing": 0.1,
        "triplet_weight": 1.0,
        "shared_weight": 3.0,
        "rol_weight": 1.5,
        "rol_order": 2,
        "kdl_weight": 5.25,
        "extra_terms": {},
    }
    assert cfg.sie_coe == 1.0 and cfg.optim.backbone_lr == 5.0e-6
