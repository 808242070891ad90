"""The LightningModule wires net, objective, optimiser and metric together as documented."""

from __future__ import annotations

import pytest
import torch

from mdreid.modalities import MODALITIES
from mdreid.module import ReIDModule

TINY = {
    "name": "ViT-B-16",
    "weights": None,
    "embed_dim": 16,
    "vision": {"width": 32, "layers": 1, "heads": 2, "patch_size": 8},
}


def make_module(enabled: bool) -> ReIDModule:
    return ReIDModule(
        backbone=TINY,
        num_classes=4,
        num_cameras=2,
        image_size=(16, 8),
        mdl={"decoupled": enabled, "tie_tokens": True},
        loss={} if enabled else {"rol_weight": 0.0, "kdl_weight": 0.0},
        evaluation={"pairs": "all", "max_rank": 10},
    )


def eval_batch(n: int = 12) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    batch = {m: torch.randn(n, 3, 16, 8, generator=g) for m in MODALITIES}
    batch.update(
        present=torch.ones(n, 3, dtype=torch.bool),
        pid=torch.arange(n) % 3,
        camid=torch.arange(n) % 2,
        sceneid=torch.full((n,), -1),
        index=torch.arange(n),
        is_query=torch.ones(n, dtype=torch.bool),
        is_gallery=torch.ones(n, dtype=torch.bool),
    )
    return batch


@pytest.mark.parametrize("enabled", [True, False])
def test_every_pair_is_scored_for_mdreid_and_baseline(enabled: bool) -> None:
    """The baseline's single feature per modality is compared across modalities (R->N exists)."""
    module = make_module(enabled).eval()
    with torch.no_grad():
        module.validation_step(eval_batch(), 0)
    result = module.val_metric.compute()
    assert len(result.rows) == 49
    assert result.row("R", "N")["num_valid"] == 12


def test_optimizer_groups_follow_official_rules() -> None:
    module = make_module(True)
    optimizer = module.configure_optimizers()
    lrs = {g["name"]: g["initial_lr"] for g in optimizer.param_groups}  # before the scheduler steps
    names = {n for g in optimizer.param_groups for n in g["param_names"]}
    assert "mdl.encoder.class_embedding" in names  # tied token: once, at the encoder LR
    by_name = {n: g["name"] for g in optimizer.param_groups for n in g["param_names"]}
    assert by_name["mdl.encoder.class_embedding"] == "encoder"
    assert by_name["mdl.encoder.positional_embedding"] == "token_pos"
    assert by_name["mdl.cv_embed"] == "head"
    assert lrs["encoder"] == 5e-6 and lrs["head"] == 3.5e-4


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_test_epoch_leaves_one_evaluation_with_result_and_samples() -> None:
    """What PublishResults and the notebook read after ``trainer.test``: scores and the samples for plots."""
    module = make_module(True).eval()
    assert module.test_evaluation is None
    with torch.no_grad():
        module.test_step(eval_batch(), 0)
    module.on_test_epoch_end()  # logging needs a trainer; without one Lightning only warns
    evaluation = module.test_evaluation
    assert len(evaluation.result.rows) == 49 and evaluation.result.row("R", "N")["num_valid"] == 12
    assert evaluation.samples["sp"].shape == evaluation.samples["sh"].shape == (12, 3, 16)
    assert torch.equal(evaluation.samples["index"], torch.arange(12))
    assert module.test_metric.update_count == 0  # reset for the next test
