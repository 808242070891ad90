"""CLIP visual tower construction (open_clip) and local weight loading with the official bilinear resize."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from mdreid.models.backbone import build_backbone
from mdreid.models.clip_weights import convert_to_safetensors, load_clip_visual_weights
from mdreid.process.errors import MDReIDError

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "convert_clip_weights.py"


def tiny(image_size=(32, 16), layers: int = 1, width: int = 32, seed: int = 0):
    torch.manual_seed(seed)
    vision = {"width": width, "layers": layers, "heads": 2, "patch_size": 8}
    return build_backbone(image_size=image_size, vision=vision, embed_dim=16)


def test_tiny_tower_shapes_and_activation() -> None:
    visual = tiny()
    assert visual.grid_size == (4, 2)
    assert visual.positional_embedding.shape == (1 + 8, 32)
    assert visual.proj.shape == (32, 16) and visual.output_dim == 16
    assert visual.transformer.resblocks[0].attn.num_heads == 2
    assert type(visual.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"
    plain = build_backbone(
        image_size=(32, 16), vision={"width": 32, "layers": 1, "heads": 2}, quick_gelu=False
    )
    assert isinstance(plain.transformer.resblocks[0].mlp.gelu, nn.GELU)
    assert visual(torch.randn(2, 3, 32, 16)).shape == (2, 16)


def test_vit_b16_layout_for_person_images() -> None:
    visual = build_backbone("ViT-B-16", image_size=(256, 128))
    assert visual.grid_size == (16, 8)
    assert visual.positional_embedding.shape == (1 + 128, 768)
    assert visual.proj.shape == (768, 512)
    assert len(visual.transformer.resblocks) == 12
    assert visual.transformer.resblocks[0].attn.num_heads == 12


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"name": "ViT-NOPE"}, "model.backbone.name"),
        ({"name": "hf-hub:timm/vit_base_patch16_clip_224.openai"}, "model.backbone.name"),
        ({"name": "RN50"}, "not a plain CLIP ViT"),
        ({"vision": {"depth": 2}}, "model.backbone.vision"),
        ({"vision": {"width": 32, "heads": 3}}, "heads=3"),
        ({"image_size": (250, 128)}, "data.image_size"),
    ],
)
def test_bad_backbone_config_is_a_readable_error(kwargs: dict, needle: str) -> None:
    with pytest.raises(MDReIDError, match=needle.replace(".", r"\.")):
        build_backbone(**kwargs)


def _save(state: dict, path: Path, fmt: str) -> Path:
    if fmt == "plain":
        torch.save(state, path)
    elif fmt == "wrapped":  # a DataParallel full-CLIP checkpoint with text keys
        full = {f"module.visual.{k}": v for k, v in state.items()} | {"module.logit_scale": torch.ones(())}
        torch.save({"state_dict": full, "epoch": 3}, path)
    else:
        full = {f"visual.{k}": v.contiguous() for k, v in state.items()} | {
            "text_projection": torch.ones(4, 4)
        }
        save_file(full, str(path))
    return path


@pytest.mark.parametrize("fmt", ["plain", "wrapped", "safetensors"])
def test_load_resizes_square_grid_bilinearly(tmp_path: Path, fmt: str) -> None:
    source = tiny(image_size=(32, 32), seed=1)  # 4x4 grid
    path = _save(source.state_dict(), tmp_path / f"w.{'safetensors' if fmt == 'safetensors' else 'pt'}", fmt)
    target = tiny(image_size=(48, 16), seed=2)  # 6x2 grid
    load_clip_visual_weights(target, path)

    for name, value in source.state_dict().items():
        if name != "positional_embedding":
            assert torch.equal(target.state_dict()[name], value), name
    table = source.positional_embedding.detach()
    grid = table[1:].reshape(1, 4, 4, -1).permute(0, 3, 1, 2)
    bilinear = F.interpolate(grid, size=(6, 2), mode="bilinear", align_corners=False)
    expected = torch.cat([table[:1], bilinear.permute(0, 2, 3, 1).reshape(12, -1)])
    assert torch.allclose(target.positional_embedding, expected, atol=1e-6)
    bicubic = F.interpolate(grid, size=(6, 2), mode="bicubic", antialias=True, align_corners=False)
    assert not torch.allclose(bilinear, bicubic, atol=1e-3)  # open_clip's own resize would differ


def test_same_grid_loads_unchanged_and_build_backbone_takes_weights(tmp_path: Path) -> None:
    source = tiny(seed=3)
    torch.save(source.state_dict(), tmp_path / "w.pt")
    target = build_backbone(
        image_size=(32, 16),
        vision={"width": 32, "layers": 1, "heads": 2, "patch_size": 8},
        embed_dim=16,
        weights=str(tmp_path / "w.pt"),
    )
    for name, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[name], value), name


class _ScriptedClip(nn.Module):
    """Stands in for OpenAI's TorchScript CLIP: a visual tower plus non-visual state."""

    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        self.visual = visual
        self.logit_scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x) * self.logit_scale


def _torchscript(tmp_path: Path, visual: nn.Module) -> Path:
    path = tmp_path / "ViT-tiny.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about nn.MultiheadAttention shape checks
        traced = torch.jit.trace(_ScriptedClip(visual).eval(), torch.randn(1, 3, 32, 32), check_trace=False)
        torch.jit.save(traced, str(path))
    return path


def test_torchscript_archive_is_refused_with_the_conversion_hint(tmp_path: Path) -> None:
    """A TorchScript archive carries code: only the explicit conversion opens it, never a training run."""
    path = _torchscript(tmp_path, tiny(image_size=(32, 32), seed=4))
    target = tiny(image_size=(32, 32), seed=5)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(MDReIDError, match=r"TorchScript archive.*convert_clip_weights\.py"):
        load_clip_visual_weights(target, path)
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


def test_convert_script_writes_visual_safetensors(tmp_path: Path) -> None:
    source = tiny(image_size=(32, 32), seed=6)
    path = _torchscript(tmp_path, source)
    out = tmp_path / "out" / "visual.safetensors"
    run = subprocess.run([sys.executable, str(SCRIPT), str(path), str(out)], capture_output=True, text=True)
    assert run.returncode == 0 and f"wrote {out}" in run.stdout, run.stderr[-3000:]
    stored = load_file(str(tmp_path / "out" / "visual.safetensors"))
    assert set(stored) == {f"visual.{k}" for k in source.state_dict()}
    assert stored["visual.positional_embedding"].shape == (17, 32)  # grid kept as stored
    target = tiny(image_size=(32, 16), seed=7)
    load_clip_visual_weights(target, tmp_path / "out" / "visual.safetensors")
    assert torch.equal(target.conv1.weight, source.conv1.weight)
    assert convert_to_safetensors(path, tmp_path / "again.safetensors").is_file()


def test_missing_and_unexpected_keys_are_listed(tmp_path: Path) -> None:
    torch.save(tiny(layers=1).state_dict(), tmp_path / "one.pt")
    torch.save(tiny(layers=2).state_dict(), tmp_path / "two.pt")
    with pytest.raises(MDReIDError, match=r"model\.backbone\.weights.*missing: transformer\.resblocks\.1\."):
        load_clip_visual_weights(tiny(layers=2), tmp_path / "one.pt")
    with pytest.raises(MDReIDError, match=r"missing: none; unexpected: transformer\.resblocks\.1\.") as err:
        load_clip_visual_weights(tiny(layers=1), tmp_path / "two.pt")
    assert "more)" in str(err.value) and "\n" not in str(err.value)


def test_shape_mismatch_is_a_readable_error(tmp_path: Path) -> None:
    torch.save(tiny(width=32).state_dict(), tmp_path / "w.pt")
    with pytest.raises(MDReIDError, match=r"shape mismatch \(class_embedding \(32,\) vs \(64,\)"):
        load_clip_visual_weights(tiny(width=64), tmp_path / "w.pt")


def test_non_square_grid_of_another_size_is_refused(tmp_path: Path) -> None:
    torch.save(tiny(image_size=(32, 16)).state_dict(), tmp_path / "w.pt")  # 4x2 grid
    with pytest.raises(MDReIDError, match="not a square grid"):
        load_clip_visual_weights(tiny(image_size=(32, 32)), tmp_path / "w.pt")


def test_missing_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(MDReIDError, match=r"model\.backbone\.weights=.*nope\.pt: file not found"):
        load_clip_visual_weights(tiny(), tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"definitely not a checkpoint")
    with pytest.raises(MDReIDError, match=r"model\.backbone\.weights=.*not a readable CLIP checkpoint"):
        load_clip_visual_weights(tiny(), tmp_path / "junk.pt")
    (tmp_path / "junk.safetensors").write_bytes(b"nor this")
    with pytest.raises(MDReIDError, match="not a readable CLIP checkpoint"):
        load_clip_visual_weights(tiny(), tmp_path / "junk.safetensors")
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "resnet.pt")
    with pytest.raises(MDReIDError, match="not a CLIP ViT checkpoint"):
        load_clip_visual_weights(tiny(), tmp_path / "resnet.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(MDReIDError, match="expected a state dict of tensors"):
        load_clip_visual_weights(tiny(), tmp_path / "list.pt")
