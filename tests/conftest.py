"""Shared fixtures: Hydra configs composed through the compose API, shrunk to run in seconds on a CPU."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from mdreid.config.hydra import compose_config

# A few seconds per epoch on 2 cores: 8 identities, tiny ViT, 64x32 images (4x2 patch grid).
TINY_OVERRIDES = [
    "experiment=synthetic",
    "logger=csv",
    "callbacks=none",
    "data.synth.ids=12",
    "data.image_size=[64,32]",
    "data.batch_size=16",
    "data.num_instances=4",
    "data.num_workers=0",
    "data.eval_batch_size=64",
    "trainer.max_epochs=2",
    "trainer.check_val_every_n_epoch=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "model.backbone.weights=null",  # a smaller tower than the shipped proxy foundation
    "model.backbone.vision.width=64",
    "model.backbone.vision.patch_size=16",
    "model.backbone.vision.layers=2",
    "model.backbone.vision.heads=2",
    "model.backbone.embed_dim=32",
    "eval.max_rank=10",
]


def compose_cfg(config_name: str, overrides: list[str], output_dir: Path | None = None) -> DictConfig:
    """Compose like ``@hydra.main`` would (the ``hydra`` node included); with ``output_dir``, point every path
    at it and make it the current Hydra run, as code that reads ``HydraConfig`` expects."""
    cfg = compose_config(config_name, overrides, return_hydra_config=True)
    if output_dir is None:
        return cfg
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
    HydraConfig().set_config(cfg)
    return cfg


def save_weights_checkpoint(module, path: Path) -> Path:
    """``module``'s weights and hyper-parameters as the mdreid checkpoint eval reads (no training state)."""
    import lightning
    import torch

    payload = {
        "state_dict": module.state_dict(),
        module.CHECKPOINT_HYPER_PARAMS_KEY: dict(module.hparams),
        "pytorch-lightning_version": lightning.__version__,
    }
    torch.save(payload, path)
    return path


@pytest.fixture(scope="session")
def synthetic_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny synthetic dataset shared by every end-to-end test (generated on first use)."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def tiny_cfg(tmp_path: Path, synthetic_data_dir: Path) -> Callable[..., DictConfig]:
    """Factory: ``tiny_cfg("train.yaml", "trainer.max_epochs=3")`` -> a composed, shrunk config."""

    def make(config_name: str = "train.yaml", *extra: str, output_dir: Path | None = None) -> DictConfig:
        overrides = [*TINY_OVERRIDES, f"paths.data_dir={synthetic_data_dir}", *extra]
        return compose_cfg(config_name, overrides, output_dir or tmp_path / "run")

    yield make
    GlobalHydra.instance().clear()


def run_in_fresh_home(
    entry: str, args: list[str], tmp_path: Path
) -> tuple[subprocess.CompletedProcess[str], list[Path]]:
    """``python -m mdreid.<entry> ARGS`` from ``tmp_path/work`` with an empty HOME, offline W&B and none of the
    user's W&B, XDG, matplotlib, mdreid or Hydra variables. Returns the process and what it wrote outside
    ``tmp_path/work/run`` (point ``hydra.run.dir`` there)."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    drop = ("WANDB_", "XDG_", "MDREID_", "HYDRA_", "MPLCONFIGDIR")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(HOME=str(home), WANDB_MODE="offline", WANDB_SILENT="true")
    proc = subprocess.run(
        [sys.executable, "-m", f"mdreid.{entry}", *args],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    outside = [p for p in home.rglob("*") if p.is_file()]
    outside += [p for p in work.iterdir() if p.name != "run"]
    return proc, outside


@pytest.fixture(autouse=True)
def _seeded_global_rngs() -> None:
    """Every test starts from the same global random state, so none depends on which tests ran before it
    (tests that draw random numbers should still seed a generator of their own)."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
