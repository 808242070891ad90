"""The benchmark readers: filename grammars, layouts, sorting/labels, and every kind of bad input."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from mdreid.data.readers import (
    DATASETS,
    benchmark_folder,
    load_benchmark,
    msvr310,
    rgbnt100,
    rgbnt201,
    split_folders,
)
from mdreid.process.errors import MDReIDError
from replicas import benchmark_dir, build_replica, build_tiny, manifests_or_skip, write_tree

GRAMMARS = {"rgbnt201": rgbnt201.GRAMMAR, "rgbnt100": rgbnt100.GRAMMAR, "msvr310": msvr310.GRAMMAR}


# ------------------------------------------------------------------------------------------- grammars


@pytest.mark.parametrize(
    ("dataset", "name", "fields"),
    [
        ("rgbnt201", "000205_cam2_0_02.jpg", (205, 1, -1)),
        ("rgbnt201", "000009_cam3_1_00.jpg", (9, 2, -1)),
        ("rgbnt201", "000258_cam1_0_00.jpg", (258, 0, -1)),
        ("rgbnt201", "000299_cam2_0_12.jpg", (299, 1, -1)),
        ("rgbnt100", "0539_c0001_009.jpg", (539, 0, -1)),
        ("rgbnt100", "0599_c0006_024.jpg", (599, 5, -1)),
        ("rgbnt100", "0600_c0008_024.jpg", (600, 7, -1)),
        ("msvr310", "0268_s000_v0_000.jpg", (268, 0, 0)),
        ("msvr310", "0094_s023_v1_007.jpg", (94, 1, 23)),
        ("msvr310", "0015_s017_v5_008.jpg", (15, 5, 17)),
        ("msvr310", "0331_s000_v7_007.jpg", (331, 7, 0)),
    ],
)
def test_grammar_parses_real_names(dataset: str, name: str, fields: tuple[int, int, int]) -> None:
    """(pid, 0-based camera, scene): RGBNT201/100 cameras are decremented, MSVR310 views are not."""
    assert GRAMMARS[dataset].parse(name) == fields


@pytest.mark.parametrize(
    ("dataset", "name"),
    [
        ("rgbnt201", "00205_cam2_0_02.jpg"),  # 5-digit pid
        ("rgbnt201", "000205_cam12_0_02.jpg"),  # two-digit camera
        ("rgbnt201", "000205_cam0_0_02.jpg"),  # camera 0 in a 1-based set
        ("rgbnt201", "000205_cam2_0_2.jpg"),
        ("rgbnt201", "000205_cam2_0_02.JPG"),
        ("rgbnt201", "000205_cam2_0_02.jpg.bak"),
        ("rgbnt201", "x000205_cam2_0_02.jpg"),
        ("rgbnt201", "000205_cam2_0_02.jpg\n"),
        ("rgbnt201", "000205_cam\uff12_0_02.jpg"),  # full-width digit
        ("rgbnt100", "539_c0001_009.jpg"),
        ("rgbnt100", "0539_c001_009.jpg"),
        ("rgbnt100", "0539_c0000_009.jpg"),
        ("rgbnt100", "exp-3_c2_0539_c0001_009.jpg"),
        ("rgbnt100", "0539_c0001_009.png"),
        ("rgbnt100", "-001_c0001_009.jpg"),
        ("msvr310", "268_s000_v0_000.jpg"),
        ("msvr310", "0268_s00_v0_000.jpg"),
        ("msvr310", "0268_s000_v10_000.jpg"),
        ("msvr310", "0268_s000_v0_000.jpeg"),
        ("msvr310", "0268_s000_c0_000.jpg"),
    ],
)
def test_grammar_rejects_near_misses(dataset: str, name: str) -> None:
    assert GRAMMARS[dataset].parse(name) is None


def test_every_manifest_name_parses() -> None:
    manifests = manifests_or_skip()
    for path in sorted(manifests.glob("*.txt")):
        grammar = GRAMMARS[path.stem.split("_")[0]]
        bad = [n for n in path.read_text().split() if grammar.parse(n) is None]
        assert bad == [], path.name


def test_public_names() -> None:
    assert DATASETS == ("rgbnt201", "rgbnt100", "msvr310", "wmveid863")
    assert [benchmark_folder(d) for d in DATASETS] == ["RGBNT201", "RGBNT100", "MSVR310", "MSVWild863"]
    assert split_folders("rgbnt201") == {"train": "train_171", "query": "test", "gallery": "test"}
    assert split_folders("MSVR310")["query"] == "query3"


# ----------------------------------------------------------------------------------- good trees


@pytest.fixture(scope="module")
def msvr_replica(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_replica("msvr310", tmp_path_factory.mktemp("msvr"), manifests_or_skip())


def test_msvr310_replica_scenes_labels_and_order(msvr_replica: Path) -> None:
    bench = load_benchmark("msvr310", msvr_replica)
    assert bench.junk_rule == "scene"
    assert (len(bench.train), len(bench.query), len(bench.gallery)) == (1032, 591, 1055)
    assert not bench.query_is_gallery
    for rec in bench.train + bench.query + bench.gallery:
        vid, scene, view, _ = rec.name[:-4].split("_")
        assert (rec.pid, rec.sceneid, rec.camid) == (int(vid), int(scene[1:]), int(view[1:]))
        assert rec.paths == tuple(
            str(
                Path(bench.root)
                / {"train": "bounding_box_train", "query": "query3", "gallery": "bounding_box_test"}[
                    rec.split
                ]
                / vid
                / m
                / rec.name
            )
            for m in ("vis", "ni", "th")
        )
    assert {r.sceneid for r in bench.train} == {0, *range(2, 31)}  # 30 train scenes, no scene 1
    train_pids = sorted({r.pid for r in bench.train})
    assert [r.label for r in bench.train] == [train_pids.index(r.pid) for r in bench.train]
    assert bench.num_classes == 155 and bench.num_cameras == 8
    for split, records in (("train", bench.train), ("query", bench.query), ("gallery", bench.gallery)):
        assert [r.index for r in records] == list(range(len(records)))
        assert [r.name for r in records] == sorted(r.name for r in records)
        assert {r.split for r in records} == {split}
    assert all(r.label == -1 for r in bench.query + bench.gallery)
    assert {r.name for r in bench.query} <= {r.name for r in bench.gallery}


def test_rgbnt201_query_is_gallery_and_cameras_are_zero_based(tmp_path: Path) -> None:
    bench = load_benchmark("rgbnt201", build_tiny("rgbnt201", tmp_path))
    assert bench.query is bench.gallery and bench.query_is_gallery
    assert bench.root == str(tmp_path / "RGBNT201")
    assert [(r.pid, r.camid, r.split, r.label) for r in bench.query] == [
        (258, 0, "test", -1),
        (258, 1, "test", -1),
        (299, 0, "test", -1),
        (299, 1, "test", -1),
    ]
    assert [(r.pid, r.camid, r.label, r.index) for r in bench.train] == [
        (9, 2, 0, 0),
        (9, 2, 0, 1),
        (28, 0, 1, 2),
        (205, 1, 2, 3),
    ]
    rec = bench.train[0]
    assert rec.paths == tuple(
        str(tmp_path / "RGBNT201/train_171" / m / "000009_cam3_1_00.jpg") for m in ("RGB", "NI", "TI")
    )
    assert not rec.stitched and rec.sceneid == -1
    assert (bench.num_classes, bench.num_cameras, bench.junk_rule) == (3, 3, "camera")


def test_rgbnt100_is_stitched_and_sorted(tmp_path: Path) -> None:
    bench = load_benchmark("rgbnt100", build_tiny("rgbnt100", tmp_path))
    gallery = [(r.name, r.pid, r.camid, r.index, r.split) for r in bench.gallery]
    assert gallery == [
        ("0502_c0001_000.jpg", 502, 0, 0, "gallery"),
        ("0502_c0002_003.jpg", 502, 1, 1, "gallery"),
        ("0600_c0003_000.jpg", 600, 2, 2, "gallery"),
        ("0600_c0008_024.jpg", 600, 7, 3, "gallery"),
    ]
    assert [r.name for r in bench.query] == ["0502_c0001_000.jpg", "0600_c0008_024.jpg"]
    assert {r.split for r in bench.query} == {"query"}
    for rec in bench.train + bench.query + bench.gallery:
        assert rec.stitched and rec.paths[0] == rec.paths[1] == rec.paths[2]
    assert bench.query[0].paths[0] == str(tmp_path / "RGBNT100/rgbir/query/0502_c0001_000.jpg")
    assert [r.label for r in bench.train] == [0, 1, 1, 2]


def test_msvr310_lowercase_root_is_accepted(tmp_path: Path) -> None:
    build_tiny("msvr310", tmp_path)
    (tmp_path / "MSVR310").rename(tmp_path / "msvr310")
    bench = load_benchmark("msvr310", tmp_path)
    assert bench.root == str(tmp_path / "msvr310")
    assert [(r.pid, r.camid, r.sceneid) for r in bench.query] == [(2, 0, 2), (2, 1, 13)]


def test_stray_files_are_ignored(tmp_path: Path) -> None:
    clean = load_benchmark("msvr310", build_tiny("msvr310", tmp_path / "clean"))
    root = build_tiny("msvr310", tmp_path / "messy")
    top = benchmark_dir("msvr310", root)
    for stray in (
        "bounding_box_train/.DS_Store",
        "bounding_box_train/Thumbs.db",
        "bounding_box_train/__MACOSX/0001/vis/0001_s002_v0_000.jpg",
        "bounding_box_train/notes/0001_s002_v0_000.jpg",
        "bounding_box_train/0001/vis/Thumbs.db",
        "bounding_box_train/0001/vis/.DS_Store",
        "bounding_box_train/0001/ni/._0001_s002_v0_000.jpg",
        "bounding_box_train/0001/th/readme.txt",
        "bounding_box_train/0001/th/0001_s002_v0_001.png",
        "bounding_box_train/0001/vis/0001_s002_v0_009.JPG",
        "query3/.hidden.jpg",
    ):
        (top / stray).parent.mkdir(parents=True, exist_ok=True)
        (top / stray).write_bytes(b"junk")
    messy = load_benchmark("msvr310", root)
    for split in ("train", "query", "gallery"):
        strip = [(r.name, r.pid, r.camid, r.sceneid, r.label, r.index) for r in getattr(clean, split)]
        assert strip == [(r.name, r.pid, r.camid, r.sceneid, r.label, r.index) for r in getattr(messy, split)]


def test_rgbnt201_extra_folders_and_files_are_ignored(tmp_path: Path) -> None:
    root = build_tiny("rgbnt201", tmp_path)
    top = benchmark_dir("rgbnt201", root)
    write_tree("rgbnt201", root, {"val": ["000030_cam1_0_00.jpg"]})  # folders beyond train_171/test
    (top / "text").mkdir()
    (top / "text" / "train_RGB.json").write_text("[]")
    (top / "test" / "RGB" / "Thumbs.db").write_bytes(b"junk")
    bench = load_benchmark("rgbnt201", root)
    assert (len(bench.train), len(bench.gallery)) == (4, 4)


# ------------------------------------------------------------------------------------- bad input


def test_missing_root_names_the_expected_folder(tmp_path: Path) -> None:
    with pytest.raises(MDReIDError) as err:
        load_benchmark("rgbnt201", tmp_path / "nowhere")
    msg = str(err.value)
    assert f"expected {tmp_path / 'nowhere' / 'RGBNT201' / 'train_171'}" in msg
    assert "set data.root (or --root) to the folder that contains RGBNT201/" in msg
    assert "\n" not in msg


def test_msvr310_missing_root_mentions_both_spellings(tmp_path: Path) -> None:
    with pytest.raises(MDReIDError, match=r"contains MSVR310/ or msvr310/"):
        load_benchmark("msvr310", tmp_path)


def test_root_pointing_inside_the_benchmark_suggests_the_parent(tmp_path: Path) -> None:
    build_tiny("rgbnt100", tmp_path)
    with pytest.raises(MDReIDError, match=rf"use {tmp_path}\)$"):
        load_benchmark("rgbnt100", tmp_path / "RGBNT100" / "rgbir")


def test_missing_split_folder_is_named(tmp_path: Path) -> None:
    root = build_tiny("rgbnt100", tmp_path)
    shutil.rmtree(benchmark_dir("rgbnt100", root) / "query")
    with pytest.raises(MDReIDError, match="expected folder .*RGBNT100/rgbir/query is missing"):
        load_benchmark("rgbnt100", root)


def test_missing_modality_folder_is_named(tmp_path: Path) -> None:
    root = build_tiny("rgbnt201", tmp_path)
    shutil.rmtree(benchmark_dir("rgbnt201", root) / "test" / "TI")
    with pytest.raises(MDReIDError, match="expected folder .*RGBNT201/test/TI is missing"):
        load_benchmark("rgbnt201", root)


def test_empty_split_names_the_folder(tmp_path: Path) -> None:
    root = build_tiny("rgbnt100", tmp_path)
    query = benchmark_dir("rgbnt100", root) / "query"
    for f in query.iterdir():
        f.unlink()
    (query / ".DS_Store").write_bytes(b"junk")
    with pytest.raises(MDReIDError) as err:
        load_benchmark("rgbnt100", root)
    assert f"split folder {query} holds no usable triplets" in str(err.value)
    assert "PPPP_cCCCC_III.jpg" in str(err.value)


def _break_modalities(root: Path) -> tuple[Path, Path]:
    """Remove one NI file and add one TI-only file in RGBNT201 train; return two of the now-absent paths."""
    train = benchmark_dir("rgbnt201", root) / "train_171"
    (train / "NI" / "000028_cam1_0_02.jpg").unlink()
    shutil.copyfile(train / "TI" / "000009_cam3_1_00.jpg", train / "TI" / "000009_cam3_1_07.jpg")
    return train / "NI" / "000028_cam1_0_02.jpg", train / "RGB" / "000009_cam3_1_07.jpg"


def test_missing_modality_file_is_an_error(tmp_path: Path) -> None:
    root = build_tiny("rgbnt201", tmp_path)
    gone_ni, gone_rgb = _break_modalities(root)
    with pytest.raises(MDReIDError) as err:
        load_benchmark("rgbnt201", root)
    msg = str(err.value)
    assert msg.startswith("RGBNT201: 3 modality file(s) are missing: ")  # NI of one, RGB+NI of the other
    assert str(gone_ni) in msg and str(gone_rgb) in msg
    assert "data.on_missing=skip" in msg and "2 incomplete triplet(s)" in msg


def test_missing_modality_file_skip_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = build_tiny("rgbnt201", tmp_path)
    _break_modalities(root)
    with caplog.at_level(logging.WARNING):
        bench = load_benchmark("rgbnt201", root, on_missing="skip")
    assert [r.name for r in bench.train] == [
        "000009_cam3_1_00.jpg",
        "000009_cam3_1_01.jpg",
        "000205_cam2_0_02.jpg",
    ]
    assert [r.label for r in bench.train] == [0, 0, 1]  # labels are built after dropping
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith(
        "RGBNT201: dropped 2 triplet(s) with 3 missing modality file(s) (data.on_missing=skip): "
    )
    assert str(benchmark_dir("rgbnt201", root) / "train_171" / "NI" / "000028_cam1_0_02.jpg") in warning


def test_msvr310_missing_thermal_file(tmp_path: Path) -> None:
    root = build_tiny("msvr310", tmp_path)
    gone = benchmark_dir("msvr310", root) / "query3" / "0002" / "th" / "0002_s013_v1_002.jpg"
    gone.unlink()
    with pytest.raises(MDReIDError, match=rf"1 modality file\(s\) are missing: {gone};"):
        load_benchmark("msvr310", root)
    assert len(load_benchmark("msvr310", root, on_missing="skip").query) == 1


def _add_bad_names(root: Path, count: int) -> list[Path]:
    test_dir = benchmark_dir("rgbnt100", root) / "bounding_box_test"
    bad = [test_dir / f"0502_c{i:04d}.jpg" for i in range(count)]
    for path in bad:
        path.write_bytes(b"x")
    return bad


def test_bad_filenames_are_an_error(tmp_path: Path) -> None:
    root = build_tiny("rgbnt100", tmp_path)
    bad = _add_bad_names(root, 7)
    with pytest.raises(MDReIDError) as err:
        load_benchmark("rgbnt100", root)
    msg = str(err.value)
    assert msg.startswith("RGBNT100: 7 .jpg file(s) do not follow the name rule PPPP_cCCCC_III.jpg: ")
    assert all(str(p) in msg for p in bad[:5]) and str(bad[5]) not in msg
    assert "... (2 more)" in msg and "data.on_bad_name=skip" in msg and "\n" not in msg


def test_bad_filenames_skip_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = build_tiny("rgbnt100", tmp_path)
    _add_bad_names(root, 7)
    with caplog.at_level(logging.WARNING):
        bench = load_benchmark("rgbnt100", root, on_bad_name="skip")
    assert len(bench.gallery) == 4
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "ignored 7 .jpg file(s)" in warnings[0]


def test_msvr310_filename_must_match_its_id_folder(tmp_path: Path) -> None:
    root = build_tiny("msvr310", tmp_path)
    vid = benchmark_dir("msvr310", root) / "bounding_box_train" / "0001"
    for m in ("vis", "ni", "th"):
        shutil.copyfile(vid / m / "0001_s002_v0_000.jpg", vid / m / "0003_s002_v0_001.jpg")
    with pytest.raises(
        MDReIDError, match=r"1 \.jpg file\(s\) do not follow the name rule VVVV/.*0001/vis/0003_s002"
    ):
        load_benchmark("msvr310", root)
    assert len(load_benchmark("msvr310", root, on_bad_name="skip").train) == 4


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (
            {"name": "market1501"},
            "data.dataset='market1501': no dataset reader has that name (known: rgbnt201, rgbnt100, msvr310, "
            "wmveid863, manifest); a dataset reader of your own is registered with @register_reader('market1501') "
            'in a module that an installed package names under [project.entry-points."mdreid.readers"]: install '
            "your package (pip install -e <its folder>), see docs/extending.md",
        ),
        (
            {"name": "rgbnt201", "on_missing": "ignore"},
            "invalid data.on_missing='ignore': use one of error, skip",
        ),
        (
            {"name": "rgbnt201", "on_bad_name": "warn"},
            "invalid data.on_bad_name='warn': use one of error, skip",
        ),
    ],
)
def test_invalid_arguments_list_valid_values(tmp_path: Path, kwargs: dict[str, str], expected: str) -> None:
    with pytest.raises(MDReIDError) as err:
        load_benchmark(root=tmp_path, **kwargs)
    assert str(err.value) == expected
