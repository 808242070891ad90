"""The zero-shot diagnostic of a tower file: its numbers equal the ranking functions applied to the tower's own
features, and the grayscale score really sees grayscale RGB."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from conftest import compose_cfg
from mdreid.data.transforms import MEAN, STD
from mdreid.metrics.functional import query_rank_stats, summarize_rank_stats
from mdreid.modalities import MODALITIES
from mdreid.models.backbone import build_backbone
from mdreid.models.clip_weights import save_visual_weights
from mdreid.pretrain.zero_shot import grayscale, markdown, run, zero_shot
from mdreid.process.errors import MDReIDError

TINY_TOWER = {"embed_dim": 128, "vision": {"width": 128, "layers": 4, "heads": 4, "patch_size": 8}}


def test_grayscale_is_luma_in_every_channel() -> None:
    gen = torch.Generator().manual_seed(0)
    pixels = torch.rand(2, 3, 4, 5, generator=gen)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    out = grayscale((pixels - mean) / std) * std + mean
    luma = 0.2989 * pixels[:, 0] + 0.587 * pixels[:, 1] + 0.114 * pixels[:, 2]
    for c in range(3):
        torch.testing.assert_close(out[:, c], luma, atol=1e-5, rtol=0)


def reference_map(query: torch.Tensor, gallery: torch.Tensor, ids: dict[str, torch.Tensor]) -> float:
    """mAP (%) of cosine retrieval, ranked by the functional form on a distance matrix built here."""
    q, g = ids["is_query"], ids["is_gallery"]
    dist = 2 - 2 * F.normalize(query[q], dim=1) @ F.normalize(gallery[g], dim=1).T
    stats = query_rank_stats(dist, ids["pid"][q], ids["pid"][g], ids["camid"][q], ids["camid"][g])
    return summarize_rank_stats(stats, 50)["mAP"] * 100


def test_zero_shot_scores_the_towers_own_features(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    torch.manual_seed(0)
    tower = build_backbone(image_size=(64, 64), **TINY_TOWER)  # pretraining's square grid, resized on load
    weights = save_visual_weights(tower.state_dict(), tmp_path / "tower.safetensors")
    overrides = [
        f"out={weights}",
        f"paths.data_dir={tmp_path / 'data'}",
        "zero_shot.data.synth.preset=tiny",
        "zero_shot.data.eval_batch_size=16",
    ]
    cfg = compose_cfg("pretrain.yaml", overrides, tmp_path / "run")
    record = run(cfg)
    assert json.loads((tmp_path / "run" / "zero_shot.json").read_text()) == record
    assert len(record["mAP"]) == 49 and record["data"]["preset"] == "tiny"
    assert "R->R mAP on grayscale RGB" in capsys.readouterr().out

    # the same tower, the same test split, features computed and ranked here
    datamodule = instantiate(cfg.zero_shot.data, _convert_="all")
    datamodule.setup("test")
    tower = build_backbone(weights=str(weights), image_size=datamodule.image_size, **TINY_TOWER).eval()
    batches = list(datamodule.test_dataloader())
    ids = {k: torch.cat([b[k] for b in batches]) for k in ("pid", "camid", "is_query", "is_gallery")}
    with torch.no_grad():  # batch by batch, as the diagnostic runs: a matmul's rounding depends on its shape
        per_batch = [tower(torch.cat([b[key] for key in MODALITIES])).chunk(3) for b in batches]
        feats = {key: torch.cat([f[m] for f in per_batch]) for m, key in enumerate(MODALITIES)}
        gray = torch.cat([tower(grayscale(b["RGB"])) for b in batches])
    assert bool(torch.cat([b["present"] for b in batches]).all())  # a synthetic copy has every modality
    expected = {
        "R->R": reference_map(feats["RGB"], feats["RGB"], ids),
        "R->N": reference_map(feats["RGB"], feats["NI"], ids),
        "T->T": reference_map(feats["TI"], feats["TI"], ids),
    }
    # RNT -> RNT: the three blocks concatenated, then normalised as a whole (the "code" similarity)
    every = torch.cat([feats[k] for k in MODALITIES], dim=1)
    expected["RNT->RNT"] = reference_map(every, every, ids)
    # a random tower's features are close together: float32 rounding of the metric's dot-product form may
    # swap near-ties, so allow 0.05 points (a wrong modality or a missed conversion moves several)
    for pair, value in expected.items():
        assert record["mAP"][pair] == pytest.approx(value, abs=0.05), pair
    gray_map = reference_map(gray, gray, ids)
    assert record["grayscale_R->R"]["mAP"] == pytest.approx(gray_map, abs=0.05)
    assert abs(gray_map - expected["R->R"]) > 0.5  # the grayscale score saw other images than the colour one
    assert "**RNT** |" in markdown(record)


def test_zero_shot_needs_an_existing_tower_file(tmp_path: Path) -> None:
    cfg = compose_cfg(
        "pretrain.yaml", [f"out={tmp_path / 'none.safetensors'}", f"paths.data_dir={tmp_path}"], tmp_path
    )
    with pytest.raises(SystemExit):  # cli_errors: one error line, exit 2
        run(cfg)
    with pytest.raises(MDReIDError, match="not found"):
        zero_shot(tmp_path / "none.safetensors", {}, cfg.zero_shot.data)
