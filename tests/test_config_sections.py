"""The model.mdl / model.loss / model.optim / model.schedule sections are read as typed dataclasses: a misspelt
key, a value outside the allowed ones or of the wrong kind is one MDReIDError naming it and what is allowed."""

from __future__ import annotations

import pytest

from mdreid.losses.loss_config import LossConfig
from mdreid.models.mdl_encoder import MDLConfig
from mdreid.module import ReIDModule
from mdreid.optim.lr_schedule import ScheduleConfig
from mdreid.runtime.config_sections import typed_section
from mdreid.runtime.errors import MDReIDError

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
    assert str(err.value) == "model.mdl: unknown key(s) foo; allowed: enabled, tie_tokens"


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"loss": {"rol_weight": "heavy"}}, "model.loss.rol_weight='heavy': expected a number"),
        ({"mdl": {"enabled": 1}}, "model.mdl.enabled=1: expected true or false"),
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
    net = module(mdl={"enabled": False, "tie_tokens": True}).net
    assert not net.decoupled
