"""The validation split: held-out training identities, disjoint from training and test on every layout and on
manifests, the same for any training seed, worker count and world size; ``none`` and ``test`` as documented."""

from __future__ import annotations

import csv
import json
import os
from collections import defaultdict
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mdreid.config.preflight import check_selection
from mdreid.data.data_config import DataConfig
from mdreid.data.datamodule import MultiModalReIDDataModule
from mdreid.data.readers import load_benchmark
from mdreid.data.synthetic.generate import generate
from mdreid.data.val_split import ValConfig, split_validation
from mdreid.process.errors import MDReIDError


@pytest.fixture(scope="module")
def copies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny synthetic copies of the four benchmarks (24 identities each) under one root."""
    root = tmp_path_factory.mktemp("val-copies")
    for like in ("rgbnt201", "rgbnt100", "msvr310", "wmveid863"):
        generate(like, root, ids=24, seed=0, preset="tiny")
    return root


def pids(records) -> set[int]:
    return {r.pid for r in records}


def datamodule(root: str, **options) -> MultiModalReIDDataModule:
    """The DataModule of the RGBNT201 copy under ``root``, in PK batches of 4 identities x 2."""
    section = {
        "dataset": "rgbnt201",
        "root": root,
        "image_size": [32, 16],
        "batch_size": 8,
        "num_instances": 2,
    }
    return MultiModalReIDDataModule(DataConfig.parse({**section, **options}))


@pytest.mark.parametrize("dataset", ["rgbnt201", "rgbnt100", "msvr310", "wmveid863"])
def test_held_out_identities_are_disjoint_and_follow_the_test_protocol(dataset: str, copies: Path) -> None:
    raw = load_benchmark(dataset, copies)
    bench = split_validation(raw, ValConfig.parse({"ids": 0.25, "min_ids": 2, "seed": 3}))
    held, trained, tested = pids(bench.val.gallery), pids(bench.train), pids([*raw.query, *raw.gallery])
    assert len(held) == round(0.25 * len(pids(raw.train))) == 4
    assert held | trained == pids(raw.train) and not held & trained and not held & tested
    assert sorted({r.label for r in bench.train}) == list(range(len(trained)))  # the classifier's size
    assert {r.split for r in bench.val.gallery} == {"val"} and all(r.label == -1 for r in bench.val.gallery)
    assert [r.index for r in bench.val.gallery] == list(range(len(bench.val.gallery)))
    assert len(bench.train) + len(bench.val.gallery) == len(raw.train)
    # every held-out identity can be matched: two cameras, or under the scene rule two scenes
    views = defaultdict(set)
    for r in bench.val.gallery:
        views[r.pid].add(r.sceneid if raw.junk_rule == "scene" else r.camid)
    assert all(len(v) > 1 for v in views.values())
    assert bench.val.junk_rule == raw.junk_rule and (bench.query, bench.gallery) == (raw.query, raw.gallery)
    if dataset == "rgbnt100":  # one query in five of each identity and camera, as its query folder
        assert not bench.val.query_is_gallery
        groups = defaultdict(int)
        for r in bench.val.gallery:
            groups[(r.pid, r.camid)] += 1
        asked = defaultdict(int)
        for r in bench.val.query:
            asked[(r.pid, r.camid)] += 1
        assert asked == {k: max(1, n // 5) for k, n in groups.items()}
        assert {r.paths for r in bench.val.query} <= {r.paths for r in bench.val.gallery}
    else:
        assert bench.val.query_is_gallery
    # the cameras of held-out identities keep their rows in the camera embedding
    assert bench.num_cameras == raw.num_cameras


def test_the_split_moves_with_its_own_seed_only(copies: Path) -> None:
    raw = load_benchmark("rgbnt201", copies)
    split = {s: pids(split_validation(raw, ValConfig(seed=s, ids=4)).val.gallery) for s in range(6)}
    assert len({frozenset(v) for v in split.values()}) > 1  # the seed draws another set
    # built through the DataModule with two training seeds and worker counts: the same held-out set
    held = []
    for seed, workers in ((0, 0), (99, 2)):
        dm = datamodule(str(copies), num_workers=workers, seed=seed, val={"ids": 4, "seed": 2})
        held.append(pids(dm.benchmark.val.gallery))
    assert held[0] == held[1] == split[2]


def test_none_trains_on_every_identity_and_test_validates_on_the_test_split(copies: Path) -> None:
    raw = load_benchmark("rgbnt201", copies)
    none = split_validation(raw, ValConfig.parse("none"))
    assert none.val is None and none.train == raw.train
    test = split_validation(raw, ValConfig.parse("test"))
    assert test.val.query is raw.query and test.val.gallery is raw.gallery and test.train == raw.train
    assert ValConfig.parse(None).mode == "none" and ValConfig.parse("holdout") == ValConfig()


def write_manifest(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_a_manifest_s_val_rows_are_the_split_or_join_training(copies: Path, tmp_path: Path) -> None:
    raw = load_benchmark("rgbnt201", copies)
    rows = []
    for split, records in (("train", raw.train), ("test", raw.query)):
        for r in records:
            val = split == "train" and r.pid in (1, 2)
            rows.append(
                {
                    "split": "val" if val else split,
                    "pid": r.pid,
                    "camid": r.camid,
                    "rgb": r.paths[0],
                    "nir": r.paths[1],
                    "tir": r.paths[2],
                }
            )
    manifest = load_benchmark("manifest", write_manifest(tmp_path / "m.csv", rows))
    explicit = split_validation(manifest, ValConfig())
    assert pids(explicit.val.gallery) == {1, 2} and explicit.val.query_is_gallery
    assert not pids(explicit.train) & {1, 2}
    joined = split_validation(manifest, ValConfig.parse("none"))
    assert joined.val is None and pids(joined.train) == pids(raw.train)
    assert sorted({r.label for r in joined.train}) == list(range(len(pids(raw.train))))
    # a manifest without val rows: identities are held out as from a benchmark
    plain = load_benchmark(
        "manifest", write_manifest(tmp_path / "p.csv", [r for r in rows if r["split"] != "val"])
    )
    held = split_validation(plain, ValConfig(ids=2, seed=1))
    assert len(pids(held.val.gallery)) == 2 and not pids(held.val.gallery) & pids(held.train)


def test_impossible_or_misspelt_splits_are_one_line_errors(copies: Path) -> None:
    raw = load_benchmark("rgbnt201", copies)
    with pytest.raises(MDReIDError, match=r"holds out 15 of 16 training identities.*data.val=none"):
        split_validation(raw, ValConfig(ids=15))
    for bad, match in (
        ({"ids": 0}, "data.val.ids=0"),
        ({"ids": 2.5}, "data.val.ids=2.5"),
        ({"share": 0.1}, "unknown key"),
        ("tset", "data.val='tset'"),
        (7, "data.val=7"),
    ):
        with pytest.raises(MDReIDError, match=match):
            ValConfig.parse(bad)


def test_selection_needs_a_validation_split_and_test_selection_a_switch() -> None:
    with pytest.raises(
        MDReIDError, match="optimized_metric=val/score: data.val=none .* optimized_metric=null"
    ):
        check_selection({"optimized_metric": "val/score"}, ValConfig.parse("none"))
    with pytest.raises(MDReIDError, match=r"monitor=test/score selects on the test split.*data.val=test"):
        check_selection({"callbacks.model_checkpoint.monitor": "test/score"}, ValConfig())
    check_selection({"optimized_metric": "val/score"}, ValConfig())
    check_selection({"optimized_metric": "test/score"}, ValConfig.parse("test"))


def _rank_listing(rank: int, world: int, root: str, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        dm = datamodule(root, num_workers=0, val={"ids": 4})
        seen = [int(i) for batch in dm.val_dataloader() for i in batch["index"]]
        got = {
            "held": sorted(pids(dm.benchmark.val.gallery)),
            "train": sorted(pids(dm.benchmark.train)),
            "indices": seen,
            "size": len(dm.val_set),
        }
        Path(out, f"rank{rank}.json").write_text(json.dumps(got))
    finally:
        dist.destroy_process_group()


def test_two_ranks_hold_out_the_same_identities_and_share_the_listing(copies: Path, tmp_path: Path) -> None:
    port = 29500 + os.getpid() % 1000
    # forked, not spawned: the ranks need no fresh interpreter (and skip seconds of imports)
    mp.start_processes(
        _rank_listing, args=(2, str(copies), port, str(tmp_path)), nprocs=2, join=True, start_method="fork"
    )
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    single = datamodule(str(copies), num_workers=0, val={"ids": 4})
    assert ranks[0]["held"] == ranks[1]["held"] == sorted(pids(single.benchmark.val.gallery))
    assert ranks[0]["train"] == ranks[1]["train"] == sorted(pids(single.benchmark.train))
    # each validation image is evaluated once, on one of the two ranks
    assert sorted(ranks[0]["indices"] + ranks[1]["indices"]) == list(range(ranks[0]["size"]))
    assert torch.tensor(ranks[0]["indices"]).numel() > 0 and torch.tensor(ranks[1]["indices"]).numel() > 0
