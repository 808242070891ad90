"""docs/extending.md's plugins, written as a user would outside ``src/`` (tests/toy_plugins.py): a dataset
reader registered by decorator, a loss term and a tower from the config, each trained for a step; the tower's
checkpoint is evaluated through the factory."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import toy_plugins
from conftest import TINY_OVERRIDES, compose_cfg
from mdreid.data.readers import junk_rule, load_benchmark, register_reader, sources
from mdreid.data.synthetic.generate import generate
from mdreid.eval import evaluate
from mdreid.factory import load_module
from mdreid.losses.loss_config import LossConfig
from mdreid.models.tower import Tower, build_tower, check_tower_section
from mdreid.optim.param_groups import build_param_groups
from mdreid.process.errors import MDReIDError
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
        "data.val=none",  # the toy set's few identities: every one is trained on
        f"+{term}._target_=toy_plugins.FeatureNormPenalty",
        f"+{term}.target=0.5",
        f"+{term}.weight=0.1",
    ]
    metrics = train(compose_cfg("train.yaml", overrides, tmp_path / "run"))
    norm = metrics["train/norm"]
    assert norm > 0 and torch.isfinite(torch.tensor(norm))
    parts = sum(metrics[f"train/{k}"] for k in ("id", "triplet", "rol", "kdl", "norm"))
    assert metrics["train/loss"] == pytest.approx(parts, rel=1e-5)


def test_the_toy_tower_trains_a_step_and_its_checkpoint_evaluates(site: Path, tmp_path: Path) -> None:
    data = ["data.dataset=toy_two_cameras", f"data.root={site}", "data.synth=null", "data.val=none"]
    tower = ["~model.backbone", "+model.backbone={_target_: toy_plugins.ToyTower, width: 32, patch_size: 16}"]
    tiny = [o for o in TINY_OVERRIDES if not o.startswith(("callbacks=", "model.backbone."))]
    last_checkpoint_only = [
        "~callbacks.progress_bar",
        "~callbacks.model_summary",
        "~callbacks.model_checkpoint",
    ]
    steps = [
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=1",
        "+trainer.limit_val_batches=0",
        "test=true",
    ]
    run = tmp_path / "run"
    trained = train(
        compose_cfg(
            "train.yaml", [*tiny, "callbacks=default", *last_checkpoint_only, *steps, *data, *tower], run
        )
    )
    assert torch.isfinite(torch.tensor(trained["train/loss"]))

    # the checkpoint's hyper-parameters rebuild the toy tower (no weights file: the checkpoint has them all)
    ckpt = run / "checkpoints" / "last.ckpt"
    model = load_module(ckpt)
    net = model.net
    assert isinstance(net.mdl.encoder, toy_plugins.ToyTower) and isinstance(net.mdl.encoder, Tower)
    assert net.mdl.encoder.positional_embedding.shape == (2 + 4 * 2, 32)  # the class row twice, 4x2 patches
    assert net.mdl.out_dim == 16 and net.heads_sp[0].bn.num_features == 16
    groups = {
        n: g["name"]
        for g in build_param_groups(net.named_parameters(), model.optim_cfg)
        for n in g["param_names"]
    }
    assert groups["mdl.encoder.block.linear1.weight"] == groups["mdl.encoder.block.linear1.bias"] == "encoder"
    assert groups["mdl.encoder.class_embedding"] == groups["mdl.encoder.patches.weight"] == "encoder"
    assert groups["mdl.encoder.positional_embedding"] == "token_pos"

    # evaluating the checkpoint gives the scores the run itself measured with the same weights
    scores = evaluate(compose_cfg("eval.yaml", [*tiny, *data, f"ckpt_path={ckpt}"], tmp_path / "eval"))
    assert scores["test/score"] == pytest.approx(trained["test/score"], abs=1e-6)
    assert scores["test/score"] > 0


def test_a_target_that_is_no_tower_or_a_misspelt_key_is_one_line() -> None:
    with pytest.raises(MDReIDError, match=r"missing: class_token, out_dim, use_prefix_tokens, embed_patches"):
        build_tower({"_target_": "torch.nn.Identity"}, (64, 32))
    with pytest.raises(MDReIDError, match=r"toy_plugins\.NoTower.*cannot be imported"):
        check_tower_section({"_target_": "toy_plugins.NoTower"})
    with pytest.raises(MDReIDError, match=r"toy_plugins\.ToyTower cannot be called .*'widht'"):
        check_tower_section({"_target_": "toy_plugins.ToyTower", "widht": 32})
    check_tower_section({"_target_": "toy_plugins.ToyTower", "allow_random_init": True, "weights": None})


def test_a_loss_term_without_a_target_is_one_line(tmp_path: Path) -> None:
    cfg = compose_cfg("train.yaml", [*TINY_OVERRIDES, "+model.loss.extra_terms.id.weight=1"], tmp_path / "r")
    with pytest.raises(MDReIDError, match=r"model\.loss\.extra_terms\.id: give \{_target_"):
        train(cfg)


def test_a_loss_term_weight_that_is_no_number_is_one_line() -> None:
    spec = {"_target_": "toy_plugins.FeatureNormPenalty", "weight": "0.1"}
    with pytest.raises(
        MDReIDError, match=r"^model\.loss\.extra_terms\.norm\.weight='0\.1': expected a number$"
    ):
        LossConfig(extra_terms={"norm": spec})
    term = {"_target_": "toy_plugins.FeatureNormPenalty", "target": 2}
    assert LossConfig(extra_terms={"norm": term}).extra() == {"norm": (1.0, term)}
