"""The MDL token layout: tied/untied shared token, duplicated CLS positional row, SIE on token 0 only; the
open_clip ViT driven through the tower protocol, with open_clip's parameter names and numbers."""

from __future__ import annotations

import pytest
import torch

from mdreid.models.backbone import build_backbone
from mdreid.models.mdl_encoder import MDLEncoder
from mdreid.models.openclip_tower import OpenCLIPTower
from mdreid.models.tower import Tower
from mdreid.process.errors import MDReIDError

TINY_VISION = {"width": 32, "layers": 2, "heads": 2, "patch_size": 8}


def clip_vit(seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    return build_backbone(image_size=(32, 16), vision={**TINY_VISION, **kwargs}, embed_dim=16)


def tower(seed: int = 0) -> OpenCLIPTower:
    return OpenCLIPTower(clip_vit(seed))


def encoder(seed: int = 0, **kwargs) -> MDLEncoder:
    torch.manual_seed(seed)
    kwargs.setdefault("num_cameras", 3)
    return MDLEncoder(tower(seed), **kwargs)


def test_positional_table_duplicates_the_cls_row() -> None:
    visual = tower()
    original = visual.positional_embedding.detach().clone()
    mdl = MDLEncoder(visual, num_cameras=2)
    table = mdl.encoder.positional_embedding
    assert table.shape == (2 + 8, 32)
    assert torch.equal(table[0], original[0]) and torch.equal(table[1], original[0])
    assert torch.equal(table[2:], original[1:])
    names = [n for n, _ in mdl.named_parameters()]
    assert names.count("encoder.positional_embedding") == 1  # replaced in place, CLIP's name kept


def test_baseline_keeps_the_clip_table() -> None:
    visual = tower()
    original = visual.positional_embedding
    mdl = MDLEncoder(visual, num_cameras=2, decoupled=False)
    assert mdl.encoder.positional_embedding is original and mdl.shared_token is None


def test_tied_token_is_one_parameter() -> None:
    mdl = encoder(tie_tokens=True)
    assert mdl.shared_token is None
    names = [n for n, _ in mdl.named_parameters()]
    assert "encoder.class_embedding" in names and not any("shared_token" in n for n in names)
    assert sum(p is mdl.encoder.class_embedding for p in mdl.parameters()) == 1


def test_untied_token_is_a_separate_copy() -> None:
    mdl = encoder(tie_tokens=False)
    names = dict(mdl.named_parameters())
    assert names["shared_token"] is mdl.shared_token
    assert mdl.shared_token is not mdl.encoder.class_embedding
    assert mdl.shared_token.data_ptr() != mdl.encoder.class_embedding.data_ptr()
    assert torch.equal(mdl.shared_token, mdl.encoder.class_embedding)


def test_tied_gradient_is_the_sum_of_both_token_gradients() -> None:
    tied, untied = encoder(seed=1, tie_tokens=True), encoder(seed=1, tie_tokens=False)
    images, cams = torch.randn(3, 3, 32, 16), torch.tensor([0, 1, 2])
    tied(images, cams).pow(2).sum().backward()
    untied(images, cams).pow(2).sum().backward()
    both = untied.encoder.class_embedding.grad + untied.shared_token.grad
    assert torch.allclose(tied.encoder.class_embedding.grad, both, atol=1e-5)


def test_output_shapes() -> None:
    images, cams = torch.randn(4, 3, 32, 16), torch.tensor([0, 1, 2, 0])
    assert encoder()(images, cams).shape == (4, 2, 16)
    assert encoder(decoupled=False)(images, cams).shape == (4, 1, 16)


def test_camera_embedding_is_added_to_token_zero_only() -> None:
    mdl = encoder(seed=2, sie_coe=2.0)
    seen: list[torch.Tensor] = []
    mdl.encoder.ln_pre.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach()))
    image = torch.randn(1, 3, 32, 16)
    mdl(image, torch.tensor([0]))
    mdl(image, torch.tensor([2]))
    first, second = seen
    assert torch.equal(first[:, 1:], second[:, 1:])  # shared token and patches untouched
    shift = 2.0 * (mdl.cv_embed[0] - mdl.cv_embed[2]).detach()
    assert torch.allclose(first[:, 0] - second[:, 0], shift, atol=1e-6)
    assert mdl.cv_embed.shape == (3, 1, 32)


def test_tokens_differ_only_by_the_camera_embedding_at_init() -> None:
    """Tied token and equal positional rows: without SIE the specific and shared outputs coincide."""
    mdl = encoder(seed=3)
    images, cams = torch.randn(2, 3, 32, 16), torch.tensor([0, 1])
    with torch.no_grad():
        out = mdl(images, cams)
        assert not torch.allclose(out[:, 0], out[:, 1], atol=1e-4)
        mdl.cv_embed.zero_()
        out = mdl(images, cams)
    assert torch.allclose(out[:, 0], out[:, 1], atol=1e-5)


def test_baseline_without_camera_embedding_matches_open_clip() -> None:
    """The single-token path is CLIP's own forward plus SIE: with SIE off it equals open_clip's pooled output."""
    visual = clip_vit(seed=4)
    mdl = MDLEncoder(OpenCLIPTower(visual), num_cameras=3, decoupled=False, sie_coe=0.0)
    images = torch.randn(2, 3, 32, 16)
    with torch.no_grad():
        ours = mdl(images, torch.tensor([1, 2]))[:, 0]
        reference = visual(images)
    assert torch.allclose(ours, reference, atol=1e-5)


def test_the_open_clip_tower_keeps_open_clips_names_and_tensors() -> None:
    """Checkpoints, CLIP weight files, the official layout and the LR rules read these names."""
    visual = clip_vit()
    state = visual.state_dict(keep_vars=True)
    adapted = OpenCLIPTower(visual)
    assert isinstance(adapted, Tower)
    assert list(adapted.state_dict()) == list(state)
    assert all(adapted.state_dict(keep_vars=True)[k] is v for k, v in state.items())
    assert adapted.class_token is visual.class_embedding and adapted.out_dim == 16
    mdl = MDLEncoder(adapted, num_cameras=2, tie_tokens=False)
    assert list(mdl.state_dict()) == ["cv_embed", "shared_token", *(f"encoder.{k}" for k in state)]


def test_a_fixed_positional_table_stays_fixed() -> None:
    visual = clip_vit()
    visual.positional_embedding.requires_grad_(False)  # open_clip's sin-cos tables are not trained
    mdl = MDLEncoder(OpenCLIPTower(visual), num_cameras=2)
    assert mdl.encoder.positional_embedding.shape[0] == 2 + 8
    assert not mdl.encoder.positional_embedding.requires_grad


def test_pooling_the_encoder_cannot_reproduce_is_refused() -> None:
    visual = clip_vit()
    visual.pool_type = "avg"
    with pytest.raises(MDReIDError, match="pooled by its class token"):
        OpenCLIPTower(visual)
    with pytest.raises(ValueError, match="already has 2 prefix rows"):
        encoder().encoder.use_prefix_tokens(3)


def test_num_cameras_must_be_positive() -> None:
    with pytest.raises(ValueError, match="num_cameras"):
        MDLEncoder(tower(), num_cameras=0)
