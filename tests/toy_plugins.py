"""What a user writes outside mdreid's source to extend it (docs/extending.md): a dataset reader, a loss term
and a tower (a backbone that is not open_clip's)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from mdreid.data.readers import load_benchmark, register_reader
from mdreid.data.records import Benchmark
from mdreid.models.net_output import NetOutput


@register_reader("toy_two_cameras")
def read_two_cameras(root: Path, on_missing: str, on_bad_name: str) -> Benchmark:
    """A site that kept only cameras 0 and 1 of an RGBNT201-layout folder."""
    bench = load_benchmark("rgbnt201", root, on_missing, on_bad_name)
    keep = [r for r in bench.train if r.camid < 2]
    labels = {pid: i for i, pid in enumerate(sorted({r.pid for r in keep}))}
    train = [replace(r, label=labels[r.pid]) for r in keep]
    test = [r for r in bench.gallery if r.camid < 2]
    return Benchmark("toy_two_cameras", str(root), train, test, test, junk_rule="camera")


class FeatureNormPenalty:
    """A loss term: the mean squared norm of the specific features, pulled towards ``target``."""

    def __init__(self, target: float = 1.0) -> None:
        self.target = target

    def __call__(self, out: NetOutput, labels: torch.Tensor) -> torch.Tensor:
        return (out.sp.pow(2).sum(-1).mean() - self.target) ** 2


class ToyTower(nn.Module):
    """A tower: a convolutional patch embedding, one PyTorch encoder layer, a norm and a projection."""

    def __init__(
        self,
        image_size: Sequence[int],
        weights: str | None = None,
        width: int = 32,
        patch_size: int = 16,
        heads: int = 2,
        out_dim: int = 16,
    ) -> None:
        super().__init__()
        if image_size[0] % patch_size or image_size[1] % patch_size:
            raise ValueError(
                f"image size {list(image_size)} is not a multiple of the patch size {patch_size}"
            )
        grid = (image_size[0] // patch_size) * (image_size[1] // patch_size)
        self.patches = nn.Conv2d(3, width, patch_size, stride=patch_size, bias=False)
        self.class_embedding = nn.Parameter(0.02 * torch.randn(width))
        self.positional_embedding = nn.Parameter(0.02 * torch.randn(1 + grid, width))
        self.block = nn.TransformerEncoderLayer(
            width, heads, 2 * width, dropout=0.0, batch_first=True, norm_first=True
        )
        self.norm = nn.LayerNorm(width)
        self.proj = nn.Linear(width, out_dim, bias=False)
        self.out_dim = out_dim
        if weights:  # mdreid passes None when a checkpoint brings every weight
            self.load_state_dict(load_file(weights))

    @property
    def class_token(self) -> nn.Parameter:
        return self.class_embedding

    def use_prefix_tokens(self, count: int) -> None:
        table = self.positional_embedding.detach()
        self.positional_embedding = nn.Parameter(torch.cat([table[:1]] * count + [table[1:]]))

    def embed_patches(self, images: torch.Tensor) -> torch.Tensor:
        return self.patches(images).flatten(2).transpose(1, 2)

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.block(tokens + self.positional_embedding.to(tokens.dtype))

    def project(self, prefix: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(prefix))
