"""``mdreid.Embedder``: the test split embedded through the API is eval's saved features bit for bit and
scores to eval's metrics.json; every input kind (path, PIL, 8/16-bit and float arrays, tensors) gives the
features of the file it came from; mixed batches, camera ids and the pair similarity match the metric."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import mdreid
from conftest import TINY_OVERRIDES, compose_cfg, save_weights_checkpoint
from mdreid.data.data_config import DataConfig
from mdreid.eval import evaluate
from mdreid.factory import build_datamodule, build_module
from mdreid.feature_file import write_feature_file
from mdreid.metrics.pair_similarity import PairDistances
from mdreid.process.errors import MDReIDError
from mdreid.score import score


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A random-initialised tiny model evaluated on the synthetic RGBNT201 test split with saved features."""
    tmp = tmp_path_factory.mktemp("embedder")
    tiny = [o for o in TINY_OVERRIDES if not o.startswith("callbacks=")]
    common = [*tiny, f"paths.data_dir={tmp / 'data'}", "eval.plots=false"]
    cfg = compose_cfg("eval.yaml", common, tmp / "eval")
    torch.manual_seed(0)
    datamodule = build_datamodule(DataConfig.parse(cfg.data))
    ckpt = save_weights_checkpoint(build_module(cfg, datamodule), tmp / "m.ckpt")
    evaluate(
        compose_cfg("eval.yaml", [*common, f"ckpt_path={ckpt}", "eval.save_features=true"], tmp / "eval")
    )
    return {
        "tmp": tmp,
        "ckpt": ckpt,
        "records": list(datamodule.benchmark.query),  # RGBNT201: query and gallery are one listing
        "features": load_file(tmp / "eval" / "features.safetensors"),
        "metrics": json.loads((tmp / "eval" / "metrics.json").read_text()),
        "eval_batch_size": int(cfg.data.eval_batch_size),
    }


def _paths(records: list, m: int) -> list[str]:
    return [r.paths[m] for r in records]


def test_the_api_reproduces_eval_features_and_metrics_exactly(evaluated: dict) -> None:
    records = evaluated["records"]
    embedder = mdreid.Embedder.from_checkpoint(evaluated["ckpt"], device="cpu")
    embedder.batch_size = evaluated["eval_batch_size"]  # eval's batches: the same float sums
    out = embedder.embed(*(_paths(records, m) for m in range(3)), camid=[r.camid for r in records])
    saved = evaluated["features"]
    assert torch.equal(out.sp, saved["features"]) and torch.equal(out.sh, saved["shared"])
    assert torch.equal(out.present, saved["present"]) and torch.equal(out.camid, saved["camid"])
    flags = torch.ones(len(records), dtype=torch.bool)
    pid = torch.tensor([r.pid for r in records])
    path = evaluated["tmp"] / "api.safetensors"
    write_feature_file(path, out.feature_set(pid, flags, flags, junk="camera", dataset="rgbnt201"))
    run = evaluated["tmp"] / "score"
    score(compose_cfg("score.yaml", [f"file={path}", "eval.max_rank=10", "eval.plots=false"], run))
    rescored = json.loads((run / "metrics.json").read_text())
    for key in ("rows", "groups", "cmc"):
        assert rescored[key] == evaluated["metrics"][key], key
    # other batch sizes give the same features up to float summation order
    embedder.batch_size = 5
    again = embedder.embed(
        *(_paths(records[:12], m) for m in range(3)), camid=[r.camid for r in records[:12]]
    )
    torch.testing.assert_close(again.sh, out.sh[:12], atol=1e-5, rtol=1e-5)


def test_every_input_kind_gives_the_features_of_its_file(evaluated: dict, tmp_path: Path) -> None:
    records = evaluated["records"][:3]
    embedder = mdreid.Embedder.from_checkpoint(evaluated["ckpt"], device="cpu")
    rgb = _paths(records, 0)
    reference = embedder.embed(rgb=rgb, camid=0)
    arrays = [np.array(Image.open(p)) for p in rgb]
    kinds = {
        "Path": [Path(p) for p in rgb],
        "PIL": [Image.open(p) for p in rgb],
        "uint8 HWC": arrays,
        "uint8 CHW tensor": [torch.from_numpy(a).permute(2, 0, 1) for a in arrays],
    }
    for name, images in kinds.items():
        assert torch.equal(embedder.embed(rgb=images, camid=0).sp, reference.sp), name
    batch = embedder.embed(rgb=np.stack([arrays[0]] * 3), camid=0)  # a 4-D array is a batch
    assert len(batch) == 3
    torch.testing.assert_close(batch.sp, reference.sp[[0, 0, 0]], atol=1e-5, rtol=1e-5)  # other batch rows
    # a 16-bit and a float thermal image: the array and its file agree, both through the stretch rule
    ramp = np.linspace(0, 1, 64 * 32).reshape(64, 32)
    counts, celsius = (ramp * 40000 + 1000).astype(np.uint16), (ramp * 50.0 - 10.0).astype(np.float32)
    Image.fromarray(counts).save(tmp_path / "t16.png")
    Image.fromarray(celsius, mode="F").save(tmp_path / "tf.tiff")
    from_files = embedder.embed(tir=[tmp_path / "t16.png", tmp_path / "tf.tiff"])
    from_arrays = embedder.embed(tir=[counts, torch.from_numpy(celsius)])
    assert torch.equal(from_files.sh, from_arrays.sh)
    stretched = [
        np.floor((a - a.min()) * 255.0 / np.ptp(a) + 0.5).astype(np.uint8) for a in (counts, celsius)
    ]
    assert torch.equal(embedder.embed(tir=stretched).sh, from_arrays.sh)  # as the 8-bit stretched images
    for bad, message in (
        (np.zeros((8, 8, 3), np.float32), "a colour array must be uint8"),
        (np.zeros((2, 8, 8, 4), np.uint8), "must be (H, W) or (H, W, 3)"),
        (np.full((8, 8), np.nan, np.float32), "NaN"),
        ("missing.png", "'missing.png' is not a file"),
        (3.5, "cannot read a float as an image"),
    ):
        with pytest.raises(MDReIDError, match=None) as info:
            embedder.embed(rgb=bad)
        assert message in str(info.value), str(info.value)


def test_a_mixed_batch_and_the_pair_similarity_are_the_metrics(evaluated: dict) -> None:
    records = evaluated["records"][:6]
    embedder = mdreid.Embedder.from_checkpoint(evaluated["ckpt"], device="cpu")
    full = embedder.embed(*(_paths(records, m) for m in range(3)), camid=[r.camid for r in records])
    drop = [
        [True, True, False],
        [False, False, True],
        [True, False, True],
        [False, True, False],
        [1, 1, 1],
        [1, 0, 0],
    ]
    given = [
        [p if keep else None for p, keep in zip(r.paths, row, strict=True)]
        for r, row in zip(records, drop, strict=True)
    ]
    mixed = embedder.embed(*zip(*given, strict=True), camid=[r.camid for r in records])
    assert mixed.subsets == ["RN", "T", "RT", "N", "RNT", "R"]
    mask = mixed.present[:, :, None]
    # each modality is encoded on its own: a missing one changes nothing else (up to float summation order)
    torch.testing.assert_close(mixed.sp, full.sp * mask, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mixed.sh, full.sh * mask, atol=1e-5, rtol=1e-5)
    assert float(mixed.sp[~mixed.present].abs().max()) == 0.0
    # a camera id changes the features; -1 (None) is no camera embedding
    assert not torch.equal(
        embedder.embed(rgb=records[0].paths[0], camid=0).sp, embedder.embed(rgb=records[0].paths[0]).sp
    )
    for bad in (embedder.num_cameras, -2):
        with pytest.raises(MDReIDError, match="is not a camera of this model"):
            embedder.embed(rgb=records[0].paths[0], camid=bad)
    # the similarity is the metric's: 2 - 2 * similarity is its distance; pair vectors give it too
    pairs = PairDistances(full.sp, full.sh, full.present, mixed.sp, mixed.sh, mixed.present)
    sim = full.similarity(mixed, "RT", "N")
    distance = pairs.distance("RT", "N", "code")
    assert (
        torch.equal(torch.isinf(sim), torch.isinf(distance)) and int(torch.isinf(sim).sum()) == 6 * 3
    )  # 3 items lack N
    finite = torch.isfinite(distance)
    torch.testing.assert_close(2 - 2 * sim[finite], distance[finite], atol=1e-6, rtol=0)
    keep = mixed.has("N")
    inner = full.pair_features("RT", "N") @ mixed.rows(keep).pair_features("RT", "N", side="gallery").T
    torch.testing.assert_close(inner, sim[:, keep], atol=1e-6, rtol=0)
    with pytest.raises(
        MDReIDError,
        match=r"item 0 has RN, not every modality of the query subset RT; keep the items that do with \.rows",
    ):
        mixed.pair_features("RT", "N")
    with pytest.raises(MDReIDError, match="the query items have different modalities"):
        mixed.similarity(full)
    with pytest.raises(MDReIDError, match="item 0 has no image in any modality"):
        embedder.embed(rgb=[None], tir=[None])
    with pytest.raises(MDReIDError, match="is one image but the others are batches"):
        embedder.embed(rgb=records[0].paths[0], tir=[records[0].paths[2]])


def test_the_checkpoints_high_bit_depth_rule_is_applied(evaluated: dict, tmp_path: Path) -> None:
    payload = torch.load(evaluated["ckpt"], weights_only=True)
    payload["datamodule_hyper_parameters"] = {"high_bit_depth": {"mode": "range", "range": [0, 1000]}}
    torch.save(payload, tmp_path / "range.ckpt")
    embedder = mdreid.Embedder.from_checkpoint(tmp_path / "range.ckpt", device="cpu")
    assert embedder.rule.mode == "range"
    counts = np.arange(64 * 32, dtype=np.uint16).reshape(64, 32) % 1000
    grey8 = np.floor(counts * 255.0 / 1000 + 0.5).astype(np.uint8)
    assert torch.equal(embedder.embed(tir=counts).sh, embedder.embed(tir=grey8).sh)
    with pytest.raises(MDReIDError, match="outside data.high_bit_depth.range"):
        embedder.embed(tir=counts + 1000)
    with pytest.raises(MDReIDError, match="path='nowhere.ckpt' does not exist"):
        mdreid.Embedder.from_checkpoint("nowhere.ckpt")


def test_an_official_pth_embeds_as_the_official_forward(evaluated: dict, tmp_path: Path) -> None:
    from test_official import official_state, reference_tokens

    state = official_state(num_classes=7, num_cameras=3, grid=8, seed=3)  # a 4x2 grid: 64x32 images
    torch.save({"model": state}, tmp_path / "own.pth")
    embedder = mdreid.Embedder.from_checkpoint(tmp_path / "own.pth", device="cpu", image_size=(64, 32))
    path = evaluated["records"][0].paths[2]
    out = embedder.embed(tir=path, camid=2)
    image = embedder.preprocess([None, None, path], "item 0")[2]
    ref = reference_tokens(state, image[None], torch.tensor([2]))
    torch.testing.assert_close(out.sp[0, 2], ref[0, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(out.sh[0, 2], ref[0, 1], atol=1e-5, rtol=0)
