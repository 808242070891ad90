"""The timm towers (models/timm_tower.py) are their library's own network: for the same (random) weights,
read from a safetensors file as a user's would be, the class-token feature and the patch tokens equal timm's
(or open_clip's) forward at the native input size; the position table is resampled as timm resamples it;
the MDL's extra prefix token keeps the registers and rotary positions in place; and no weight load reaches
the network."""

from __future__ import annotations

import functools
from pathlib import Path

import open_clip
import pytest
import timm
import torch
from open_clip.model import _build_vision_tower
from safetensors.torch import save_file
from timm.layers import resample_abs_pos_embed

from mdreid.models.mdl_encoder import MDLEncoder
from mdreid.models.timm_tower import TimmTower
from mdreid.process.errors import MDReIDError

TINY = {"depth": 2, "embed_dim": 64, "num_heads": 2}
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
# tower -> (timm name, native input size of the tiny test model: a multiple of its patch)
TOWERS = {
    "dinov2": ("vit_base_patch14_dinov2", (56, 28)),
    "dinov2_reg": ("vit_base_patch14_reg4_dinov2", (56, 28)),
    "dinov3": ("vit_base_patch16_dinov3", (64, 32)),
    "eva02": ("eva02_base_patch14_224", (56, 28)),
}


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every remote loader timm has fails the test if called."""
    import timm.models._builder as builder

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a weight download was attempted")

    for name in ("download_cached_file", "load_state_dict_from_url", "load_state_dict_from_hf"):
        monkeypatch.setattr(builder, name, refuse)


def saved(model: torch.nn.Module, path: Path) -> Path:
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def tower_input(tower: TimmTower, images: torch.Tensor) -> torch.Tensor:
    """``[class token, patches]``: the library's own layout (one prefix token, no camera embedding)."""
    cls = tower.class_token.view(1, 1, -1).expand(images.shape[0], 1, -1)
    return torch.cat([cls, tower.embed_patches(images)], dim=1)


@pytest.mark.parametrize("tower_name", sorted(TOWERS))
def test_the_tower_is_timms_forward(tower_name: str, tmp_path: Path) -> None:
    name, size = TOWERS[tower_name]
    torch.manual_seed(0)
    library = timm.create_model(name, img_size=size, **TINY).eval()
    mean, std = IMAGENET
    tower = TimmTower(
        size,
        name,
        weights=str(saved(library, tmp_path / "w.safetensors")),
        model_args=TINY,
        mean=mean,
        std=std,
    ).eval()
    tower.use_prefix_tokens(1)
    images = torch.randn(3, 3, *size)  # normalised as the data pipeline does it (mean = std = 0.5)
    theirs_in = (images * 0.5 + 0.5 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(
        1, 3, 1, 1
    )
    with torch.no_grad():
        ours = tower.encode(tower_input(tower, images))
        tokens = library.forward_features(theirs_in)
        theirs_cls = library.fc_norm(tokens[:, 0])
        ours_cls = tower.project(ours[:, :1])[:, 0]
    assert ours_cls.shape == (3, TINY["embed_dim"]) and tower.out_dim == TINY["embed_dim"]
    torch.testing.assert_close(ours_cls, theirs_cls, atol=1e-5, rtol=0)
    patches = tower.norm(ours[:, 1:])
    torch.testing.assert_close(patches, tokens[:, library.num_prefix_tokens :], atol=1e-5, rtol=0)
    if tower_name == "dinov3":  # timm pools DINOv3 by average; upstream, like mdreid, by the class token
        library.reset_classifier(0, global_pool="token")
        torch.testing.assert_close(ours_cls, library.forward_head(tokens, pre_logits=True), atol=1e-5, rtol=0)


def test_siglip_by_its_open_clip_name_is_open_clips_trunk(tmp_path: Path) -> None:
    """open_clip's SigLIP trunk has no class token: the tower adds one; its patch path is open_clip's own
    (open_clip's vision tower built with the tiny depth and width passed through to timm)."""
    torch.manual_seed(0)
    cfg = open_clip.get_model_config("ViT-B-16-SigLIP")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(timm, "create_model", functools.partial(timm.create_model, img_size=64, **TINY))
        visual = _build_vision_tower(cfg["embed_dim"], cfg["vision_cfg"]).eval()
    weights = {f"visual.{k}": v.contiguous() for k, v in visual.state_dict().items()}
    save_file(weights, str(tmp_path / "siglip.safetensors"))
    tower = TimmTower(
        (64, 64),
        "ViT-B-16-SigLIP",
        str(tmp_path / "siglip.safetensors"),
        source="open_clip",
        model_args=TINY,
        add_class_token=True,
    ).eval()
    assert tower.class_token.shape == (64,) and tower.positional_embedding.shape == (16, 64)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        tower.use_prefix_tokens(0)  # the patches alone, as open_clip's trunk sees them
        ours = tower.norm(tower.encode(tower.embed_patches(images)))
        torch.testing.assert_close(ours, visual.trunk.forward_features(images), atol=1e-5, rtol=0)
    with pytest.raises(MDReIDError, match="add_class_token=true"):
        TimmTower((32, 32), "ViT-B-16-SigLIP", source="open_clip", model_args=TINY)
    with pytest.raises(MDReIDError, match="open_clip's own ViT"):
        TimmTower((32, 32), "ViT-B-16", source="open_clip")


@pytest.mark.parametrize(
    ("name", "prefix_rows"), [("vit_base_patch14_dinov2", 1), ("vit_base_patch14_reg4_dinov2", 0)]
)
def test_the_position_table_is_resampled_as_timm_does(name: str, prefix_rows: int, tmp_path: Path) -> None:
    """Weights saved at a square 4x4 grid, loaded for 56x28 (4x2): timm's resample_abs_pos_embed with the
    prefix rows the table has (the class row for plain DINOv2, none with registers), and timm's own
    pretrained-file path gives the same table."""
    torch.manual_seed(0)
    path = saved(timm.create_model(name, img_size=56, **TINY), tmp_path / "square.safetensors")
    tower = TimmTower((56, 28), name, str(path), model_args=TINY)
    source = timm.create_model(name, img_size=56, **TINY)
    source.load_state_dict(timm.models.load_state_dict(str(path)))
    expected = resample_abs_pos_embed(source.pos_embed, new_size=(4, 2), num_prefix_tokens=prefix_rows)[0]
    torch.testing.assert_close(tower.positional_embedding, expected, atol=0, rtol=0)
    theirs = timm.create_model(
        name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, img_size=(56, 28), **TINY
    )
    torch.testing.assert_close(tower.positional_embedding, theirs.pos_embed[0], atol=0, rtol=0)


def test_the_shared_token_joins_the_class_slot_ahead_of_registers_and_rotary_patches() -> None:
    """Decoupled DINOv3: [specific, shared, 4 registers, patches]; the attention leaves 6 prefix tokens
    unrotated, so with the camera embedding zeroed the tied tokens come out identical."""
    torch.manual_seed(0)
    tower = TimmTower((64, 32), "vit_base_patch16_dinov3", model_args=TINY)
    encoder = MDLEncoder(tower, num_cameras=2, sie_coe=0.0).eval()
    assert {block.attn.num_prefix_tokens for block in tower.blocks} == {6}
    with torch.no_grad():
        out = encoder(torch.randn(2, 3, 64, 32), torch.tensor([0, 1]))
    assert out.shape == (2, 2, TINY["embed_dim"])
    torch.testing.assert_close(out[:, 0], out[:, 1], atol=1e-6, rtol=0)
    plain = TimmTower((56, 28), "vit_base_patch14_dinov2", model_args=TINY)
    table = plain.positional_embedding.detach().clone()
    plain.use_prefix_tokens(2)
    assert torch.equal(plain.positional_embedding, torch.cat([table[:1], table]))


def test_inputs_the_tower_cannot_take_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(
        MDReIDError, match=r"\[256, 128\] is not a multiple of the patch size \[14, 14\].*\[252,126\]"
    ):
        TimmTower((256, 128), "vit_base_patch14_dinov2", model_args={**TINY, "patch_size": 14})
    padded = TimmTower((60, 30), "vit_base_patch14_dinov2", model_args=TINY, pad_to_patch=True)
    assert padded.embed_patches(torch.zeros(1, 3, 60, 30)).shape == (1, 5 * 3, TINY["embed_dim"])
    with pytest.raises(MDReIDError, match="not a timm model"):
        TimmTower((64, 32), "vit_base_patch14_dinov_two")
    (tmp_path / "w.pth").write_bytes(b"")
    with pytest.raises(MDReIDError, match=r"w\.pth: not a \.safetensors file"):
        TimmTower((56, 28), "vit_base_patch14_dinov2", str(tmp_path / "w.pth"), model_args=TINY)
    other = saved(
        timm.create_model("vit_base_patch14_dinov2", img_size=56, depth=1, embed_dim=32, num_heads=2),
        tmp_path / "other.safetensors",
    )
    with pytest.raises(MDReIDError, match="does not fit timm model vit_base_patch14_dinov2"):
        TimmTower((56, 28), "vit_base_patch14_dinov2", str(other), model_args=TINY)
    with pytest.raises(MDReIDError, match=r"model\.backbone\.std=\[0\.2, 0, 0\.2\]"):
        TimmTower((56, 28), "vit_base_patch14_dinov2", model_args=TINY, std=[0.2, 0, 0.2])
