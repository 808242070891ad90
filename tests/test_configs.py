"""Every experiment composes (compose API, as lightning-hydra-template), including DDP settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import compose_cfg
from mdreid.config.location import config_dir
from mdreid.data.data_config import TARGET, DataConfig

EXPERIMENTS = sorted(p.stem for p in (Path(config_dir()) / "experiment").glob("*.yaml"))


def test_all_experiments_listed() -> None:
    assert {"rgbnt201", "rgbnt100", "msvr310", "synthetic"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_resolves(experiment: str) -> None:
    cfg = compose_cfg("train.yaml", [f"experiment={experiment}", "trainer.devices=4"])
    assert cfg.trainer.devices == 4
    assert cfg.data._target_ == TARGET
    assert cfg.model._target_.endswith("ReIDModule")
    DataConfig.parse(cfg.data)  # the data section passes its start-up checks
    OmegaConf.to_container(cfg.model, resolve=True)


@pytest.mark.parametrize(
    ("experiment", "size", "k", "lr", "seed"),
    [
        ("rgbnt201", [256, 128], 8, 3.5e-4, 1555),
        ("rgbnt100", [128, 256], 8, 1.5e-4, 1111),
        ("msvr310", [128, 256], 4, 3.5e-4, 1111),
    ],
)
def test_official_hyperparameters(experiment: str, size: list[int], k: int, lr: float, seed: int) -> None:
    cfg = compose_cfg("train.yaml", [f"experiment={experiment}"])
    assert list(cfg.data.image_size) == size
    assert cfg.data.num_instances == k and cfg.data.batch_size == 64
    assert cfg.model.optim.base_lr == lr and cfg.model.optim.backbone_lr == 5e-6
    assert cfg.seed == seed and cfg.trainer.max_epochs == 50
    assert cfg.model.backbone.name == "ViT-B-16"
    assert cfg.model.loss.rol_weight == 1.5 and cfg.model.loss.kdl_weight == 5.25


def test_cli_cfg_job_with_four_devices(tmp_path: Path) -> None:
    """`python -m mdreid.train experiment=msvr310 trainer.devices=4 --cfg job` composes on any machine."""
    proc = subprocess.run(
        [sys.executable, "-m", "mdreid.train", "experiment=msvr310", "trainer.devices=4", "--cfg", "job"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    job = OmegaConf.create(proc.stdout)
    assert job.trainer.devices == 4 and job.data.dataset == "msvr310"
