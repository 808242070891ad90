"""Every timm tower, at its tiny size, trains a step of MDReID on the synthetic data, rebuilds from its
checkpoint alone (no architecture flags) to the same test score, keeps the CLIP learning-rate rules, and
exports to ONNX with the checkpoint model's features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from conftest import TINY_OVERRIDES, compose_cfg
from mdreid.data.synthetic.generate import generate
from mdreid.eval import evaluate
from mdreid.export import example_inputs, export_extractor
from mdreid.factory import load_module
from mdreid.models.feature_extractor import FeatureExtractor
from mdreid.models.timm_tower import TimmTower
from mdreid.optim.param_groups import build_param_groups
from mdreid.train import train

SMALL = [
    "model.backbone.weights=null",
    "model.backbone.model_args={depth: 1, embed_dim: 64, num_heads: 2, patch_size: 16}",
]
# tower config -> whether its network has a position table
TOWERS = {"tiny_dinov2": True, "tiny_dinov2_reg": True, "tiny_dinov3": False, "tiny_siglip": True}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tower-site")
    generate("rgbnt201", root, ids=8, seed=0, preset="tiny")
    return root


@pytest.mark.parametrize("backbone", sorted(TOWERS))
def test_a_tiny_tower_trains_reloads_to_its_score_and_exports(
    backbone: str, site: Path, tmp_path: Path
) -> None:
    data = [f"data.root={site}", "data.synth=null"]
    tiny = [
        o for o in TINY_OVERRIDES if not o.startswith(("callbacks=", "model.backbone.", "data.synth.ids"))
    ]
    tiny.append("eval.plots=false")
    run = tmp_path / "run"
    steps = ["trainer.max_epochs=1", "+trainer.limit_train_batches=1", "+trainer.limit_val_batches=0"]
    checkpoint_only = ["callbacks=default", "~callbacks.progress_bar", "~callbacks.model_summary"]
    overrides = [*tiny, *checkpoint_only, "~callbacks.model_checkpoint", *steps, *data]
    trained = train(compose_cfg("train.yaml", [*overrides, f"model/backbone={backbone}", *SMALL], run))
    assert np.isfinite(trained["train/loss"]) and trained["test/score"] > 0

    # the checkpoint alone rebuilds the tower: name, sizes, statistics, registers, added class token
    ckpt = run / "checkpoints" / "last.ckpt"
    model = load_module(ckpt)
    tower = model.net.mdl.encoder
    assert isinstance(tower, TimmTower) and tower.out_dim == 64 and tower.prefix_count == 2
    assert (tower.positional_embedding is not None) == TOWERS[backbone]
    groups = {
        n: g["name"]
        for g in build_param_groups(model.net.named_parameters(), model.optim_cfg)
        for n in g["param_names"]
    }
    assert groups["mdl.encoder.cls_token"] == groups["mdl.encoder.blocks.0.mlp.fc1.bias"] == "encoder"
    assert groups["mdl.cv_embed"] == "head"
    if TOWERS[backbone]:
        assert groups["mdl.encoder.positional_embedding"] == "token_pos"
    scores = evaluate(compose_cfg("eval.yaml", [*tiny, *data, f"ckpt_path={ckpt}"], tmp_path / "eval"))
    assert scores["test/score"] == pytest.approx(trained["test/score"], abs=1e-6)

    # the exported graph computes the checkpoint model's features
    extractor = FeatureExtractor(model.net)
    example = example_inputs((64, 32), num_cameras=2, batch_size=2, seed=0)
    path = export_extractor(extractor, example, tmp_path / "tower.onnx", "onnx")
    image, camid = example_inputs((64, 32), num_cameras=2, batch_size=3, seed=1)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": image.numpy(), "camid": camid.numpy()})
    with torch.no_grad():
        want = extractor(image, camid)
    for ours, theirs in zip(got, want, strict=True):
        np.testing.assert_allclose(ours, theirs.numpy(), atol=1e-4, rtol=0)
