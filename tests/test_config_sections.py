"""Config sections are read as typed dataclasses (model.*, data.modality_dropout, data.high_bit_depth, data.synth,
the pretrain config's sections): a misspelt key, a value outside the allowed ones or of the wrong kind is one
MDReIDError naming it and what is allowed."""

from __future__ import annotations

from pathlib import Path

import lightning
import pytest
import torch

from mdreid.config.sections import typed_section
from mdreid.data.modality_dropout import ModalityDropout
from mdreid.data.synth_config import SynthConfig, synth_config
from mdreid.factory import load_module
from mdreid.losses.loss_config import LossConfig
from mdreid.modalities import MODALITIES
from mdreid.models.backbone import VisionOverrides, backbone_config, backbone_kwargs
from mdreid.models.mdl_encoder import MDLConfig
from mdreid.module import ReIDModule
from mdreid.optim.lr_schedule import ScheduleConfig
from mdreid.pretrain.contrastive import ProxyPretrainModule
from mdreid.pretrain.pool_data import PoolDataModule
from mdreid.process.errors import MDReIDError

TINY = {
    "name": "ViT-B-16",
    "embed_dim": 16,
    "vision": {"width": 32, "layers": 1, "heads": 2, "patch_size": 8},
}
LOSS_KEYS = "id_weight, label_smoothing, triplet_weight, shared_weight, rol_weight, rol_order, kdl_weight, extra_terms"


def module(**sections) -> ReIDModule:
    return ReIDModule(backbone=TINY, num_classes=4, num_cameras=2, image_size=(16, 8), **sections)


def test_misspelt_loss_key_names_it_and_the_allowed_keys() -> None:
    with pytest.raises(MDReIDError) as err:
        module(loss={"rol_wieght": 1})
    assert str(err.value) == f"model.loss: unknown key(s) rol_wieght; allowed: {LOSS_KEYS}"


def test_rol_order_outside_one_and_two_names_the_allowed_values() -> None:
    with pytest.raises(MDReIDError, match=r"^model\.loss\.rol_order=3: use one of 1 \(.+\), 2 \(.+\)$"):
        module(loss={"rol_order": 3})


def test_unknown_mdl_key_names_it_and_the_allowed_keys() -> None:
    with pytest.raises(MDReIDError) as err:
        module(mdl={"foo": 1})
    assert str(err.value) == "model.mdl: unknown key(s) foo; allowed: decoupled, tie_tokens"


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"loss": {"rol_weight": "heavy"}}, "model.loss.rol_weight='heavy': expected a number"),
        ({"mdl": {"decoupled": 1}}, "model.mdl.decoupled=1: expected true or false"),
        ({"schedule": {"epochs": 2.5}}, "model.schedule.epochs=2.5: expected an integer"),
        ({"optim": {"base_lr": True}}, "model.optim.base_lr=True: expected a number"),
    ],
)
def test_value_of_the_wrong_kind_is_named(sections: dict, message: str) -> None:
    with pytest.raises(MDReIDError) as err:
        module(**sections)
    assert str(err.value) == message


def test_sections_take_the_dataclass_defaults_and_integers_for_weights() -> None:
    assert typed_section(MDLConfig, None, "model.mdl") == MDLConfig()
    assert typed_section(LossConfig, {"rol_weight": 1}, "model.loss") == LossConfig(rol_weight=1)
    assert typed_section(ScheduleConfig, {"noise": False}, "model.schedule").noise is False
    net = module(mdl={"decoupled": False, "tie_tokens": True}).net
    assert not net.decoupled


# ----------------------------------------------------------- sections typed by the same reader, one case each
@pytest.mark.parametrize(
    ("parse", "message"),
    [
        (
            lambda: backbone_config({"name": "ViT-B-16", "weight": "x.safetensors"}),
            "model.backbone: unknown key(s) weight; allowed: name, weights, quick_gelu, vision, embed_dim, "
            "allow_random_init",
        ),
        (
            lambda: backbone_config({"vision": {"depth": 2}}),
            "model.backbone.vision: unknown key(s) depth; allowed: width, layers, heads, head_width, patch_size, "
            "mlp_ratio",
        ),
        (
            lambda: backbone_config({"vision": {"layers": "two"}}),
            "model.backbone.vision.layers='two': expected an integer or null",
        ),
        (
            lambda: backbone_config({"vision": 4}),
            "model.backbone.vision=4: expected a mapping of width, layers, heads, head_width, patch_size, mlp_ratio",
        ),
        (
            lambda: backbone_config({"allow_random_init": "yes"}),
            "model.backbone.allow_random_init='yes': expected true or false",
        ),
        (lambda: backbone_config({"name": 16}), "model.backbone.name=16: expected a string"),
        (
            lambda: ModalityDropout.from_config({"prob": 0.2}, seed=0),
            "data.modality_dropout: unknown key(s) prob; allowed: p, mode",
        ),
        (
            lambda: ModalityDropout.from_config({"p": "half"}, seed=0),
            "data.modality_dropout.p='half': expected a number",
        ),
        (
            lambda: ModalityDropout.from_config({"seed": 3}, seed=0),
            "data.modality_dropout: unknown key(s) seed; allowed: p, mode",
        ),
        (
            lambda: ModalityDropout.from_config(0.3, seed=0),
            "data.modality_dropout=0.3: expected a mapping of p, mode, seed",
        ),
        (
            lambda: synth_config({"size": 3}, "rgbnt201"),
            "data.synth: unknown key(s) size; allowed: like, preset, ids, seed, coupling",
        ),
        (lambda: synth_config({"ids": 2.5}, "rgbnt201"), "data.synth.ids=2.5: expected an integer or null"),
        (
            lambda: synth_config({"preset": "huge"}, "rgbnt201"),
            "invalid data.synth.preset='huge': use one of tiny, bench",
        ),
        (
            lambda: PoolDataModule(pool={"idz": 8}, cache_dir="unused"),
            "data.pool: unknown key(s) idz; allowed: ids, per_id, size, cameras, seed, palettes",
        ),
        (
            lambda: PoolDataModule(pool={}, cache_dir="unused", augment={"crop_scale": 0.5}),
            "data.augment.crop_scale=0.5: expected a list of 2 value(s)",
        ),
        (
            lambda: ProxyPretrainModule(backbone=TINY, image_size=16, optim={"lr": "fast"}),
            "optim.lr='fast': expected a number",
        ),
    ],
)
def test_each_typed_section_names_the_bad_key_or_value(parse, message: str) -> None:
    with pytest.raises(MDReIDError) as err:
        parse()
    assert str(err.value) == message


def test_typed_sections_read_nested_and_list_values() -> None:
    parsed = backbone_config({"name": "ViT-B-16", "vision": {"layers": 2, "mlp_ratio": 2}, "embed_dim": 16})
    assert parsed.vision == VisionOverrides(layers=2, mlp_ratio=2.0) and parsed.allow_random_init is True
    assert backbone_kwargs(parsed)["vision"] is parsed.vision and "allow_random_init" not in backbone_kwargs(
        parsed
    )
    assert synth_config({"ids": None, "like": "RGBNT201"}, "rgbnt201") == SynthConfig(like="rgbnt201")
    assert synth_config({}, "manifest").like == "unpaired" and synth_config(None, "rgbnt201") is None
    dropout = ModalityDropout.from_config({"p": 0, "mode": "batch"}, seed=7)
    assert (dropout.p, dropout.mode, dropout.seed) == (0.0, "batch", 7)
    augment = PoolDataModule(pool={"ids": 4}, cache_dir="unused", augment={"crop_scale": [0.25, 1]}).augment
    assert augment.crop_scale == (0.25, 1.0)


def test_the_old_switch_name_is_refused_naming_the_new_one() -> None:
    with pytest.raises(MDReIDError) as err:
        module(mdl={"enabled": False})
    assert str(err.value) == "model.mdl: unknown key(s) enabled; allowed: decoupled, tie_tokens"


def test_a_checkpoint_saved_with_the_old_switch_name_loads_as_the_same_network(tmp_path: Path) -> None:
    """Checkpoints written before the rename say ``mdl: {enabled: ...}``: the loader maps it once, so a baseline
    checkpoint rebuilds the baseline (read as the default decoupled net, its weights would not fit)."""
    torch.manual_seed(0)
    baseline = module(mdl={"decoupled": False, "tie_tokens": True}).eval()
    hparams = {**baseline.hparams, "mdl": {"enabled": False, "tie_tokens": True}}
    path = tmp_path / "old.ckpt"
    payload = {"state_dict": baseline.state_dict(), "pytorch-lightning_version": lightning.__version__}
    torch.save({**payload, ReIDModule.CHECKPOINT_HYPER_PARAMS_KEY: hparams}, path)
    loaded = load_module(path)
    assert not loaded.net.decoupled and loaded.hparams["mdl"] == {"decoupled": False, "tie_tokens": True}
    images = {m: torch.randn(2, 3, 16, 8, generator=torch.Generator().manual_seed(1)) for m in MODALITIES}
    present, camid = torch.ones(2, 3, dtype=torch.bool), torch.zeros(2, dtype=torch.long)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.net.extract(images, present, camid)[0], baseline.net.extract(images, present, camid)[0]
        )
