"""The DataModule and the triplet datasets: batch format, evaluation listing, DDP batch semantics, determinism."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from conftest import compose_cfg
from mdreid.data.data_config import DataConfig
from mdreid.data.datamodule import MultiModalReIDDataModule
from mdreid.data.modality_dropout import ModalityDropout
from mdreid.data.pk_sampler import Draw
from mdreid.data.records import Benchmark, Record
from mdreid.data.transforms import TripletTransform
from mdreid.data.triplet_dataset import EvalTripletDataset, TrainTripletDataset
from mdreid.process.errors import MDReIDError
from replicas import write_tree

SIZE = [32, 16]
TRAIN_KEYS = {"RGB", "NI", "TI", "present", "pid", "label", "camid", "sceneid", "index"}


def rgbnt201_tree(root: Path) -> Path:
    """6 train identities x 2 cameras x 2 frames; 3 test identities in cam1 and cam2."""
    train = [f"{pid:06d}_cam{cam}_0_{f:02d}.jpg" for pid in range(10, 16) for cam in (1, 2) for f in range(2)]
    test = [
        f"{pid:06d}_cam{cam}_0_{f:02d}.jpg" for pid in (258, 260, 269) for cam in (1, 2) for f in range(2)
    ]
    return write_tree("rgbnt201", root, {"train_171": train, "test": test})


def rgbnt100_tree(root: Path) -> Path:
    """4 odd train vehicles; 2 even gallery vehicles x 2 cameras x 3 images; query = the first image of each group."""
    train = [
        f"{pid:04d}_c{cam:04d}_{i:03d}.jpg"
        for pid in (501, 503, 505, 507)
        for cam in (1, 2)
        for i in range(2)
    ]
    gallery = [f"{pid:04d}_c{cam:04d}_{i:03d}.jpg" for pid in (502, 504) for cam in (1, 2) for i in range(3)]
    query = [name for name in gallery if name.endswith("_000.jpg")]
    return write_tree(
        "rgbnt100", root, {"bounding_box_train": train, "bounding_box_test": gallery, "query": query}
    )


def datamodule(dataset: str, root: Path, **kwargs) -> MultiModalReIDDataModule:
    options = {
        "image_size": SIZE,
        "batch_size": 8,
        "num_instances": 2,
        "eval_batch_size": 5,
        "num_workers": 0,
        "val": "none",  # trees of 2-4 training identities: batching is tested here, the split in test_val_split
    }
    return MultiModalReIDDataModule(
        DataConfig.parse({"dataset": dataset, "root": str(root), **options, **kwargs})
    )


def eval_batches(dm: MultiModalReIDDataModule) -> dict[str, torch.Tensor]:
    """Every evaluation batch of this rank, concatenated per key."""
    batches = list(dm.test_dataloader())
    return {key: torch.cat([b[key] for b in batches]) for key in batches[0]}


def test_train_and_eval_batches_have_the_documented_format(tmp_path: Path) -> None:
    dm = datamodule("rgbnt201", rgbnt201_tree(tmp_path))
    assert (dm.num_classes, dm.num_cameras, dm.junk_rule) == (6, 2, "camera")
    assert dm.num_query == dm.num_gallery == 12
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == TRAIN_KEYS
    for name in ("RGB", "NI", "TI"):
        assert batch[name].shape == (8, 3, *SIZE) and batch[name].dtype == torch.float32
    assert (
        batch["present"].dtype == torch.bool and batch["present"].shape == (8, 3) and batch["present"].all()
    )
    for key in ("pid", "label", "camid", "sceneid", "index"):
        assert batch[key].dtype == torch.long and batch[key].shape == (8,)
    assert batch["pid"].min() >= 10 and batch["label"].min() >= 0 and batch["label"].max() < 6
    records = dm.benchmark.train
    assert all(
        records[i].pid == p for i, p in zip(batch["index"].tolist(), batch["pid"].tolist(), strict=True)
    )
    assert (batch["sceneid"] == -1).all()

    listing = eval_batches(dm)
    assert set(listing) == TRAIN_KEYS | {"is_query", "is_gallery"}
    assert listing["index"].tolist() == list(range(12))  # RGBNT201: the test split once, both roles
    assert listing["is_query"].all() and listing["is_gallery"].all()
    assert (listing["label"] == -1).all() and listing["present"].all()
    assert listing["RGB"].min() >= -1 and listing["RGB"].max() <= 1
    assert [b["index"].numel() for b in dm.test_dataloader()] == [5, 5, 2]  # eval_batch_size, no drop_last


def test_separate_query_and_gallery_are_listed_query_first(tmp_path: Path) -> None:
    dm = datamodule("rgbnt100", rgbnt100_tree(tmp_path), image_size=[16, 32])
    assert (dm.num_query, dm.num_gallery) == (4, 12)
    listing = eval_batches(dm)
    assert listing["index"].tolist() == list(range(16))
    assert listing["is_query"].tolist() == [True] * 4 + [False] * 12
    assert listing["is_gallery"].tolist() == [False] * 4 + [True] * 12
    assert listing["pid"].tolist() == [r.pid for r in dm.benchmark.query + dm.benchmark.gallery]
    assert listing["TI"].shape == (16, 3, 16, 32)


def test_global_batch_is_split_over_devices(tmp_path: Path) -> None:
    root = rgbnt201_tree(tmp_path)
    single = datamodule("rgbnt201", root)
    whole = next(iter(single.train_dataloader()))
    halves = []
    for rank in range(2):
        dm = datamodule("rgbnt201", root)
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=2)
        loader = dm.train_dataloader()
        assert loader.batch_size == 4 and loader.drop_last and len(loader) == len(single.train_dataloader())
        halves.append(next(iter(loader)))
        shard = eval_batches(dm)["index"].tolist()
        assert shard == list(range(6 * rank, 6 * rank + 6))  # contiguous halves of the 12 test triplets
    assert torch.equal(torch.cat([h["index"] for h in halves]), whole["index"])
    assert not set(halves[0]["pid"].tolist()) & set(halves[1]["pid"].tolist())  # whole identities per device
    # identical draws give identical augmented pixels whatever the device count
    assert torch.equal(torch.cat([h["RGB"] for h in halves]), whole["RGB"])
    odd = datamodule("rgbnt201", root, batch_size=6)  # P = 3 identities cannot be split over 2 devices
    odd.trainer = SimpleNamespace(global_rank=0, world_size=2)
    with pytest.raises(MDReIDError, match="P=3"):
        odd.train_dataloader()


def test_first_batch_does_not_depend_on_num_workers(tmp_path: Path) -> None:
    root = rgbnt201_tree(tmp_path)
    options = {"modality_dropout": {"p": 0.4, "mode": "sample"}, "random_erasing": 1.0, "seed": 3}
    first = [
        next(iter(datamodule("rgbnt201", root, num_workers=w, **options).train_dataloader())) for w in (0, 2)
    ]
    assert set(first[0]) == set(first[1])
    assert all(torch.equal(first[0][k], first[1][k]) for k in first[0])
    other_seed = next(iter(datamodule("rgbnt201", root, **{**options, "seed": 4}).train_dataloader()))
    assert not torch.equal(other_seed["RGB"], first[0]["RGB"])


def test_modality_dropout_zeroes_absent_images_and_batch_mode_shares_the_mask(tmp_path: Path) -> None:
    root = rgbnt201_tree(tmp_path)
    dm = datamodule("rgbnt201", root, modality_dropout={"p": 0.5, "mode": "sample"})
    batches = list(dm.train_dataloader())
    present = torch.cat([b["present"] for b in batches])
    assert present.any(dim=1).all() and not present.all()
    for batch in batches:
        for m, name in enumerate(("RGB", "NI", "TI")):
            absent = ~batch["present"][:, m]
            assert (batch[name][absent] == 0).all()
            assert (batch[name][~absent].flatten(1) != 0).any(dim=1).all()
    dm = datamodule("rgbnt201", root, modality_dropout={"p": 0.5, "mode": "batch"})
    for batch in dm.train_dataloader():
        assert (batch["present"] == batch["present"][0]).all()
    assert eval_batches(dm)["present"].all()  # evaluation never drops


def colour_records(tmp_path: Path) -> list[Record]:
    """Two triplets whose R, N and T files are pure red, green and blue."""
    paths = []
    for name, colour in zip(("r", "n", "t"), ("red", "lime", "blue"), strict=True):
        Image.new("RGB", (16, 32), colour).save(tmp_path / f"{name}.png")
        paths.append(str(tmp_path / f"{name}.png"))
    return [
        Record(paths=tuple(paths), pid=5, camid=1, label=0, index=0, split="query"),
        Record(paths=tuple(paths), pid=6, camid=0, sceneid=3, label=1, index=1, split="gallery"),
    ]


def test_items_put_each_modality_under_its_own_key(tmp_path: Path) -> None:
    records = colour_records(tmp_path)
    listing = EvalTripletDataset(
        Benchmark("x", str(tmp_path), [], records[:1], records[1:]), TripletTransform(SIZE, False)
    )
    item = listing[1]
    assert [int(item[k].mean(dim=(1, 2)).argmax()) for k in ("RGB", "NI", "TI")] == [0, 1, 2]
    assert (item["pid"], item["camid"], item["sceneid"], item["index"]) == (6, 0, 3, 1)
    assert not item["is_query"] and item["is_gallery"]
    # a dropout pattern that keeps only N: RGB and TI are zero, NI is still green
    dropout = ModalityDropout(p=0.9, seed=0)
    position = next(i for i in range(500) if dropout.presence(0, i, 0) == (False, True, False))
    train = TrainTripletDataset(records, TripletTransform(SIZE, True, random_erasing=0.0), dropout, seed=0)
    item = train[Draw(index=1, epoch=0, position=position, batch=0)]
    assert item["present"].tolist() == [False, True, False]
    assert (item["RGB"] == 0).all() and (item["TI"] == 0).all()
    assert int(item["NI"].mean(dim=(1, 2)).argmax()) == 1 and item["label"] == 1


def test_missing_dataset_and_bad_synth_settings_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(MDReIDError):
        _ = datamodule("rgbnt201", tmp_path).num_classes
    with pytest.raises(MDReIDError, match="data.synth.like"):
        datamodule("rgbnt201", tmp_path, synth={"like": "msvr310"})
    with pytest.raises(MDReIDError, match="unknown key"):
        datamodule("rgbnt201", tmp_path, synth={"size": 3})
    with pytest.raises(MDReIDError, match="data.synth.coupling"):
        datamodule("rgbnt201", tmp_path, synth={"coupling": 1.5})
    with pytest.raises(MDReIDError, match="data.image_size"):
        datamodule("rgbnt201", tmp_path, image_size=[256, 128, 3])


@pytest.mark.parametrize(
    ("name", "dataset", "size", "k"),
    [
        ("rgbnt201", "rgbnt201", [256, 128], 8),
        ("rgbnt100", "rgbnt100", [128, 256], 8),
        ("msvr310", "msvr310", [128, 256], 4),
        ("synthetic", "rgbnt201", [128, 64], 4),
    ],
)
def test_data_configs_instantiate_with_the_official_values(
    tmp_path: Path, name: str, dataset: str, size, k
) -> None:
    cfg = compose_cfg("train.yaml", [f"data={name}", f"paths.data_dir={tmp_path}", "seed=7"])
    dm = instantiate(cfg.data)  # Hydra's way, as the yaml's _target_ says: the same parse
    assert isinstance(dm, MultiModalReIDDataModule) and dm.config == DataConfig.parse(cfg.data)
    data = dm.config
    assert (data.dataset, list(data.image_size), data.num_instances, data.seed) == (dataset, size, k, 7)
    assert data.batch_size == (32 if name == "synthetic" else 64)
    assert data.modality_dropout.p == 0.0 and not data.sync_augment
    assert (data.synth is not None) == (name == "synthetic")
    assert DataConfig.parse(dm.hparams) == data  # the checkpoint's plain values read back as the same section


def test_synth_generates_a_missing_benchmark_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    synth = {"like": "rgbnt201", "preset": "tiny", "ids": 6, "seed": 0}
    with caplog.at_level(logging.INFO, logger="mdreid.data.datamodule"):
        dm = datamodule("rgbnt201", tmp_path, synth=synth)
        dm.prepare_data()
        assert (tmp_path / "RGBNT201").is_dir()
        again = datamodule("rgbnt201", tmp_path, synth=synth)
        again.prepare_data()
        assert again.num_classes == dm.num_classes == 4
    assert len([r for r in caplog.records if "synthetic" in r.getMessage()]) == 1
    batch = next(iter(dm.train_dataloader()))
    assert batch["RGB"].shape == (8, 3, *SIZE)


def test_a_synthetic_copy_of_another_recipe_is_never_reused(tmp_path: Path) -> None:
    """Asking for the bench preset where a tiny copy lives must fail loudly, not train on the tiny copy."""
    tiny = {"like": "rgbnt201", "preset": "tiny", "ids": 6, "seed": 0}
    datamodule("rgbnt201", tmp_path, synth=tiny).prepare_data()
    datamodule("rgbnt201", tmp_path, synth={**tiny, "preset": None}).prepare_data()  # same recipe: reused
    others = (
        {**tiny, "ids": 9},
        {**tiny, "seed": 1},
        {**tiny, "ids": None, "preset": "bench"},
        {**tiny, "coupling": 0},
    )
    for other in others:
        with pytest.raises(MDReIDError, match="synthetic copy generated with .* point data.root"):
            datamodule("rgbnt201", tmp_path, synth=other).prepare_data()
