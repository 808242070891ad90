"""Checkpoint files the tests hand to mdreid: a tiny model saved as Lightning saves it, and a malicious pickle."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import lightning
import torch
from omegaconf import DictConfig

from mdreid.factory import build_module
from mdreid.module import ReIDModule

NUM_CAMERAS = 3


def save_checkpoint(
    tiny_cfg: Callable[..., DictConfig], path: Path, *overrides: str, num_cameras: int = NUM_CAMERAS
) -> ReIDModule:
    """A random tiny model saved the way Lightning does, its CLIP weights path pointing at a missing file.

    The camera embedding is scaled up so that a graph that drops it differs visibly.
    """
    cfg = tiny_cfg("train.yaml", *overrides)
    torch.manual_seed(0)
    data = SimpleNamespace(num_classes=12, num_cameras=num_cameras, junk_rule="camera")
    module = build_module(cfg, data).eval()
    with torch.no_grad():
        module.net.mdl.cv_embed.normal_(std=1.0)
    module.hparams["backbone"]["weights"] = str(path.parent / "missing-clip.safetensors")
    torch.save(
        {
            "state_dict": module.state_dict(),
            ReIDModule.CHECKPOINT_HYPER_PARAMS_KEY: dict(module.hparams),
            "pytorch-lightning_version": lightning.__version__,
        },
        path,
    )
    return module


class Payload:
    """Unpickling it calls ``os.mkdir(marker)``: what a booby-trapped checkpoint would do with ``os.system``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Callable[..., object], tuple[str]]:
        return (os.mkdir, (self.marker,))


def booby_trapped(path: Path, marker: Path, state: dict[str, torch.Tensor] | None = None) -> Path:
    """A checkpoint-looking file whose pickle runs code when loaded (``marker`` appears if it ran)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state or {"net.w": torch.zeros(2)}, "extra": Payload(marker)}, path)
    return path


def save_pretraining_checkpoint(run_dir: Path) -> Path:
    """``<run_dir>/checkpoints/last.ckpt`` as mdreid.pretrain writes it (tiny random tower), with the tower
    file beside it in the run folder."""
    from mdreid.config.hydra import compose_config
    from mdreid.pretrain.contrastive import ProxyPretrainModule

    backbone = compose_config("pretrain.yaml", []).backbone
    module = ProxyPretrainModule(backbone=backbone, image_size=32)
    path = run_dir / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True)
    torch.save(
        {
            "state_dict": module.state_dict(),
            "hyper_parameters": dict(module.hparams),
            "optimizer_states": [],
            "pytorch-lightning_version": lightning.__version__,
        },
        path,
    )
    (run_dir / "proxy_foundation.safetensors").write_bytes(b"")
    return path
