"""Every timm tower, at its tiny size, trains a step of MDReID on the synthetic data, rebuilds from its
checkpoint alone (no architecture flags) to the same test score, keeps the CLIP learning-rate rules, and
exports to ONNX with the checkpoint model's features.

Cost: one generated dataset and one training run per tower serve every test (module-scoped), and the towers
are exported together as one graph, since an export's cost is mostly per call, not per operator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from conftest import TINY_OVERRIDES, compose_cfg
from mdreid.data.synthetic.generate import generate
from mdreid.eval import evaluate
from mdreid.export import example_inputs, export_extractor
from mdreid.factory import load_module
from mdreid.models.feature_extractor import FeatureExtractor
from mdreid.models.timm_tower import TimmTower
from mdreid.module import ReIDModule
from mdreid.optim.param_groups import build_param_groups
from mdreid.train import train

SMALL = [
    "model.backbone.weights=null",
    "model.backbone.model_args={depth: 1, embed_dim: 64, num_heads: 2, patch_size: 16}",
]
# tower config -> whether its network has a position table
TOWERS = {
    "tiny_dinov2": True,
    "tiny_dinov2_reg": True,
    "tiny_dinov3": False,
    "tiny_eva02": True,
    "tiny_siglip": True,
}
TINY = [o for o in TINY_OVERRIDES if not o.startswith(("callbacks=", "model.backbone.", "data.synth.ids"))]
TINY.append("eval.plots=false")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The shared dataset and, per tower, its one-step training run (trained when first asked for)."""
    root = tmp_path_factory.mktemp("tower-site")
    generate("rgbnt201", root / "data", ids=8, seed=0, preset="tiny")
    return {"root": root, "data": [f"data.root={root / 'data'}", "data.synth=null", "data.val=none"]}


def trained(runs: dict[str, Any], backbone: str) -> tuple[Path, dict[str, float]]:
    """``(checkpoint, train()'s metrics)`` of ``backbone``'s one-step run."""
    if backbone not in runs:
        run = runs["root"] / backbone
        steps = ["trainer.max_epochs=1", "+trainer.limit_train_batches=1", "+trainer.limit_val_batches=0"]
        checkpoint_only = ["callbacks=default", "~callbacks.progress_bar", "~callbacks.model_summary"]
        overrides = [*TINY, *checkpoint_only, "~callbacks.model_checkpoint", *steps, *runs["data"]]
        metrics = train(compose_cfg("train.yaml", [*overrides, f"model/backbone={backbone}", *SMALL], run))
        runs[backbone] = (run / "checkpoints" / "last.ckpt", metrics)
    return runs[backbone]


@pytest.mark.parametrize("backbone", sorted(TOWERS))
def test_a_tiny_tower_trains_and_reloads_to_its_score(
    backbone: str, runs: dict[str, Any], tmp_path: Path
) -> None:
    ckpt, metrics = trained(runs, backbone)
    assert np.isfinite(metrics["train/loss"]) and metrics["test/score"] > 0

    # the checkpoint alone rebuilds the tower: name, sizes, statistics, registers, added class token
    model = load_module(ckpt)
    tower = model.net.mdl.encoder
    assert isinstance(tower, TimmTower) and tower.out_dim == 64 and tower.prefix_count == 2
    assert (tower.positional_embedding is not None) == TOWERS[backbone]
    groups = {
        n: g["name"]
        for g in build_param_groups(model.net.named_parameters(), model.optim_cfg)
        for n in g["param_names"]
    }
    block = [n for n in groups if n.startswith("mdl.encoder.blocks.0.mlp.")]
    assert block and {groups[n] for n in block} == {groups["mdl.encoder.cls_token"]} == {"encoder"}
    assert groups["mdl.cv_embed"] == "head"
    if TOWERS[backbone]:
        assert groups["mdl.encoder.positional_embedding"] == "token_pos"
    scores = evaluate(
        compose_cfg("eval.yaml", [*TINY, *runs["data"], f"ckpt_path={ckpt}"], tmp_path / "eval")
    )
    assert scores["test/score"] == pytest.approx(metrics["test/score"], abs=1e-6)


class Towers(nn.Module):
    """Every tower's feature extractor side by side: one graph whose outputs are each tower's ``sp``, ``sh``."""

    def __init__(self, extractors: dict[str, FeatureExtractor]) -> None:
        super().__init__()
        self.extractors = nn.ModuleDict(extractors)
        self.output_names = tuple(f"{t}.{o}" for t, e in extractors.items() for o in e.output_names)

    def forward(self, image: torch.Tensor, camid: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(out for e in self.extractors.values() for out in e(image, camid))


def test_every_tower_exports_to_onnx_with_its_checkpoint_features(
    runs: dict[str, Any], tmp_path: Path
) -> None:
    modules: dict[str, ReIDModule] = {b: load_module(trained(runs, b)[0]) for b in sorted(TOWERS)}
    towers = Towers({b.removeprefix("tiny_"): FeatureExtractor(m.net) for b, m in modules.items()})
    example = example_inputs((64, 32), num_cameras=2, batch_size=2, seed=0)
    path = export_extractor(towers, example, tmp_path / "towers.onnx", "onnx")  # type: ignore[arg-type]
    image, camid = example_inputs((64, 32), num_cameras=2, batch_size=3, seed=1)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == list(towers.output_names)
    got = session.run(None, {"image": image.numpy(), "camid": camid.numpy()})
    with torch.no_grad():
        want = towers(image, camid)
    assert len(got) == 2 * len(TOWERS)
    for name, ours, theirs in zip(towers.output_names, got, want, strict=True):
        np.testing.assert_allclose(ours, theirs.numpy(), atol=1e-4, rtol=0, err_msg=name)
