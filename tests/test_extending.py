"""docs/extending.md's plugins, written as a user would outside ``src/`` (tests/toy_plugins.py): a dataset
reader registered by decorator and a loss term from the config, each trained for a step."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import toy_plugins
from conftest import TINY_OVERRIDES, compose_cfg
from mdreid.data.readers import junk_rule, load_benchmark, register_reader, sources
from mdreid.data.synthetic.generate import generate
from mdreid.runtime.errors import MDReIDError
from mdreid.train import train

ONE_STEP = [
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=1",
    "+trainer.limit_val_batches=0",
    "test=false",
]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("toy-site")
    generate("rgbnt201", root, ids=12, seed=0, preset="tiny")
    return root


def test_a_registered_reader_is_a_dataset_name(site: Path) -> None:
    assert "toy_two_cameras" in sources() and junk_rule("toy_two_cameras") == "camera"
    bench = load_benchmark("toy_two_cameras", site)
    assert bench.train and {r.camid for r in bench.train} <= {0, 1}
    with pytest.raises(ValueError, match="taken by a built-in reader"):
        register_reader("rgbnt201")(toy_plugins.read_two_cameras)


def test_the_toy_reader_and_the_toy_loss_term_train_a_step(site: Path, tmp_path: Path) -> None:
    term = "model.loss.extra_terms.norm"
    overrides = [
        *TINY_OVERRIDES,
        *ONE_STEP,
        "data.dataset=toy_two_cameras",
        f"data.root={site}",
        "data.synth=null",
        f"+{term}._target_=toy_plugins.FeatureNormPenalty",
        f"+{term}.target=0.5",
        f"+{term}.weight=0.1",
    ]
    metrics = train(compose_cfg("train.yaml", overrides, tmp_path / "run"))
    norm = metrics["train/norm"]
    assert norm > 0 and torch.isfinite(torch.tensor(norm))
    parts = sum(metrics[f"train/{k}"] for k in ("id", "triplet", "rol", "kdl", "norm"))
    assert metrics["train/loss"] == pytest.approx(parts, rel=1e-5)


def test_a_loss_term_without_a_target_is_one_line(tmp_path: Path) -> None:
    cfg = compose_cfg("train.yaml", [*TINY_OVERRIDES, "+model.loss.extra_terms.id.weight=1"], tmp_path / "r")
    with pytest.raises(MDReIDError, match=r"model\.loss\.extra_terms\.id: give \{_target_"):
        train(cfg)
