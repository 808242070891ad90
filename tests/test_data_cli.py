"""``python -m mdreid.data``: stats on manifest replicas, verify, synth wiring, and one-line errors."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from mdreid.data import cli
from mdreid.data.image_check import ImageInfo, bit_depth, image_flags
from replicas import benchmark_dir, build_replica, build_tiny, manifests_or_skip


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``cli.main`` in-process; MDReIDError and argparse errors arrive as SystemExit."""
    try:
        code = cli.main(argv)
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return int(code or 0), out, err


def run_subprocess(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MDREID_VERBOSE": "0", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, "-m", "mdreid.data", *argv], capture_output=True, text=True, timeout=120, env=env
    )


# ---------------------------------------------------------------------------------- stats on replicas


@pytest.fixture(scope="module")
def replica_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All three full replicas (~40k hard links) under one data root, built once for this module."""
    manifests = manifests_or_skip()
    root = tmp_path_factory.mktemp("replicas")
    for name in ("rgbnt201", "rgbnt100", "msvr310"):
        build_replica(name, root, manifests)
    return root


@pytest.mark.parametrize(
    ("dataset", "expected"),
    [
        (
            "rgbnt201",
            {"train": (171, 3951, 4), "query": (30, 836, 2), "gallery": (30, 836, 2)},
        ),
        (
            "rgbnt100",
            {"train": (50, 8675, 8), "query": (50, 1715, 8), "gallery": (50, 8575, 8)},
        ),
        (
            "msvr310",
            {"train": (155, 1032, 8), "query": (52, 591, 8), "gallery": (155, 1055, 8)},
        ),
    ],
)
def test_stats_json_matches_the_published_counts(
    replica_root: Path,
    dataset: str,
    expected: dict[str, tuple[int, int, int]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run_cli(["stats", "--dataset", dataset, "--root", str(replica_root), "--json"], capsys)
    assert code == 0 and err == ""
    stats = json.loads(out)  # exactly one JSON object on stdout
    assert list(stats) == ["train", "query", "gallery", "files"]
    files = stats.pop("files")
    assert files == {
        "8-bit": files["8-bit"],
        "16-bit or float": 0,
        "unreadable": 0,
        "unmappable": 0,
        "high_bit_depth": "min-max stretch per image to 0..255",
    }
    distinct = {
        "rgbnt201": (3951 + 836) * 3,
        "rgbnt100": 8675 + 1715 + 8575,
        "msvr310": (1032 + 591 + 1055) * 3,
    }
    assert files["8-bit"] == distinct[dataset]  # every file once (RGBNT100: one strip per triplet)
    assert {k: (v["ids"], v["images"], v["cameras"]) for k, v in stats.items()} == expected
    if dataset == "msvr310":
        assert stats["train"]["scenes"] == 30 and stats["gallery"]["scenes"] == 30
    else:
        assert "scenes" not in stats["train"]
    if dataset == "rgbnt201":
        assert stats["query"]["folder"] == stats["gallery"]["folder"] == "test"


def test_stats_table(replica_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["stats", "--dataset", "msvr310", "--root", str(replica_root)], capsys)
    assert code == 0
    rows = {parts[1]: line for line in out.splitlines() if len(parts := line.split()) > 1}
    assert "155" in rows["train"] and "1,032" in rows["train"] and "bounding_box_train" in rows["train"]
    assert "52" in rows["query"] and "591" in rows["query"] and "query3" in rows["query"]
    assert out.splitlines()[-1] == (
        f"{(1032 + 591 + 1055) * 3} 8-bit files read as they are; 0 16-bit or float files mapped by min-max "
        "stretch per image to 0..255 (data.high_bit_depth.mode=stretch)"
    )


def test_stats_json_through_python_dash_m(tmp_path: Path) -> None:
    root = build_tiny("msvr310", tmp_path)
    proc = run_subprocess("stats", "--dataset", "msvr310", "--root", str(root), "--json")
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout)
    assert stats["query"] == {"ids": 1, "images": 2, "cameras": 2, "scenes": 2, "folder": "query3"}


# ------------------------------------------------------------------------------------------ errors


def test_missing_root_is_one_line_exit_2_without_traceback(tmp_path: Path) -> None:
    proc = run_subprocess("stats", "--dataset", "rgbnt201", "--root", str(tmp_path / "nope"))
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith(f"error: RGBNT201: expected {tmp_path / 'nope' / 'RGBNT201' / 'train_171'};")
    assert "--root" in lines[0]


def test_verify_of_broken_layout_exits_2_in_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = build_tiny("rgbnt201", tmp_path)
    (benchmark_dir("rgbnt201", root) / "test" / "NI" / "000258_cam1_0_00.jpg").unlink()
    code, out, err = run_cli(["verify", "--dataset", "rgbnt201", "--root", str(root)], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: RGBNT201: 1 modality file(s) are missing: ")
    assert "data.on_missing=skip" in err


def test_bad_names_exit_2_and_skip_flag_warns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    root = build_tiny("rgbnt100", tmp_path)
    (benchmark_dir("rgbnt100", root) / "query" / "0502_c1_000.jpg").write_bytes(b"x")
    argv = ["stats", "--dataset", "rgbnt100", "--root", str(root), "--json"]
    code, out, err = run_cli(argv, capsys)
    assert code == 2 and out == "" and err.count("\n") == 1 and "data.on_bad_name=skip" in err
    code, out, err = run_cli([*argv, "--on-bad-name", "skip"], capsys)
    assert code == 0 and json.loads(out)["query"]["images"] == 2
    assert [r.getMessage() for r in caplog.records] == [
        "RGBNT100: ignored 1 .jpg file(s) that do not follow the name rule PPPP_cCCCC_III.jpg "
        f"(data.on_bad_name=skip): {benchmark_dir('rgbnt100', root) / 'query' / '0502_c1_000.jpg'}"
    ]


def test_empty_split_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = build_tiny("msvr310", tmp_path)
    query = benchmark_dir("msvr310", root) / "query3"
    for vid_dir in query.iterdir():
        vid_dir.rename(query / f"old_{vid_dir.name}")  # non-digit folders are ignored
    code, _, err = run_cli(["stats", "--dataset", "msvr310", "--root", str(root)], capsys)
    assert code == 2 and err.count("\n") == 1
    assert f"split folder {query} holds no usable triplets" in err


def test_unknown_dataset_is_one_line_naming_the_readers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(["stats", "--dataset", "market1501", "--root", str(tmp_path)], capsys)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: --dataset='market1501': no dataset reader has that name (known: rgbnt201")


# ------------------------------------------------------------------------------------------ verify


def _noisy_jpeg(size: tuple[int, int]) -> bytes:
    """Random pixels, so that the entropy-coded data (and hence a truncation) is large."""
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _encoded(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _replace(path: Path, data: bytes) -> None:
    path.unlink()  # a hard link to the shared placeholder: replace it, do not write through it
    path.write_bytes(data)


@pytest.mark.parametrize(
    ("dataset", "files", "kind", "sizes"),
    [
        # (4 train + 4 test) x 3 modalities; query = gallery
        ("rgbnt201", 24, "JPEG RGB 8-bit: 24", "width 32..32, height 64..64"),
        # the stitched 768x128 strips (aspect ratio 6:1) are not flagged
        ("rgbnt100", 10, "JPEG RGB 8-bit: 10", "width 768..768, height 128..128"),
        ("msvr310", 30, "JPEG RGB 8-bit: 30", "width 64..64, height 32..32"),
    ],
)
def test_verify_all_good_reports_the_real_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dataset: str, files: int, kind: str, sizes: str
) -> None:
    root = build_tiny(dataset, tmp_path)
    code, out, _ = run_cli(["verify", "--dataset", dataset, "--root", str(root)], capsys)
    assert code == 0
    assert out.splitlines() == [
        f"{files} files read:",
        f"  {kind}",
        f"  {sizes}",
        f"{files} 8-bit files read as they are; 0 16-bit or float files mapped by min-max stretch per image "
        "to 0..255 (data.high_bit_depth.mode=stretch)",
        f"all {files} files decode and look like benchmark images",
    ]


def test_verify_flags_files_a_benchmark_cannot_contain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Five files that decode fine but are not 8-bit RGB JPEG crops: each flagged with its reason, exit 1."""
    root = build_tiny("rgbnt201", tmp_path)
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 32, 3), dtype=np.uint8))
    grey16 = Image.fromarray(np.arange(64 * 32, dtype=np.uint16).reshape(64, 32) * 30)
    replaced = {
        "RGBNT201/train_171/RGB/000009_cam3_1_00.jpg": (_encoded(rgb, "PNG"), "PNG file named .jpg"),
        "RGBNT201/train_171/NI/000009_cam3_1_01.jpg": (
            _encoded(rgb.convert("P"), "GIF"),
            "GIF file named .jpg; palette colours (mode P)",
        ),
        "RGBNT201/train_171/TI/000028_cam1_0_02.jpg": (
            _encoded(grey16, "PNG"),
            "PNG file named .jpg; 16-bit samples (mode I;16)",
        ),
        "RGBNT201/test/RGB/000258_cam1_0_00.jpg": (_noisy_jpeg((1, 1)), "1x1 has a side under 8 pixels"),
        "RGBNT201/test/TI/000299_cam2_0_12.jpg": (
            _noisy_jpeg((4000, 20)),
            "4000x20 has aspect ratio 200:1 (over 12:1)",
        ),
    }
    for rel, (data, _) in replaced.items():
        _replace(root / rel, data)
    code, out, _ = run_cli(["verify", "--dataset", "rgbnt201", "--root", str(root)], capsys)
    assert code == 1
    lines = out.splitlines()
    assert "files are bad" not in out  # all of them decode
    assert lines[:7] == [
        "24 files read:",
        "  GIF P 8-bit: 1",
        "  JPEG RGB 8-bit: 21",
        "  PNG I;16 16-bit: 1",
        "  PNG RGB 8-bit: 1",
        "  width 1..4000, height 1..64",
        "23 8-bit files read as they are; 1 16-bit or float files mapped by min-max stretch per image to 0..255 "
        "(data.high_bit_depth.mode=stretch)",
    ]
    assert lines[7] == "5 of 24 files are flagged:"
    assert sorted(lines[8:]) == sorted(f"  {rel}: {reason}" for rel, (_, reason) in replaced.items())


def test_verify_finds_a_truncated_jpeg(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = build_tiny("msvr310", tmp_path)
    broken = benchmark_dir("msvr310", root) / "bounding_box_train" / "0015" / "ni" / "0015_s017_v5_008.jpg"
    broken.unlink()  # it is a hard link to the shared placeholder: replace it, do not write through it
    broken.write_bytes(_noisy_jpeg((64, 32))[:-300])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # as upstream loaders set it globally
    code, out, _ = run_cli(["verify", "--dataset", "msvr310", "--root", str(root)], capsys)
    assert code == 1
    lines = out.strip().splitlines()
    assert lines[0] == "1 of 30 files are bad:"  # query3 files are distinct copies: (4 + 4 + 2) x 3
    assert lines[1].startswith(f"  {broken}: OSError") and "truncated" in lines[1]
    assert lines[2] == "29 files read:"  # the summary covers the files that decode
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored afterwards


def test_verify_flags_rgbnt100_files_that_are_not_768x128(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = build_tiny("rgbnt100", tmp_path)
    small = benchmark_dir("rgbnt100", root) / "query" / "0600_c0008_024.jpg"
    small.unlink()
    small.write_bytes(_noisy_jpeg((256, 128)))
    code, out, _ = run_cli(["verify", "--dataset", "rgbnt100", "--root", str(root)], capsys)
    assert code == 1
    lines = out.splitlines()
    assert lines[:2] == ["1 of 10 files are bad:", f"  {small}: size 256x128, expected 768x128"]
    assert lines[-2] == "  width 256..768, height 128..128"  # it decodes: counted, and nothing is flagged


@pytest.mark.parametrize(
    ("fmt", "mode", "size", "flags"),
    [
        ("JPEG", "RGB", (768, 128), []),  # an RGBNT100 strip, 6:1
        ("JPEG", "L", (40, 160), []),  # 8-bit grey (an NIR camera) converts to RGB losslessly
        ("MPO", "RGB", (96, 8), []),  # a JPEG with a Multi-Picture segment; exactly MIN_SIDE and MAX_ASPECT
        ("JPEG", "RGB", (97, 8), ["97x8 has aspect ratio 12.1:1 (over 12:1)"]),
        ("JPEG", "RGB", (7, 30), ["7x30 has a side under 8 pixels"]),
        ("JPEG", "CMYK", (64, 32), ["CMYK colour (mode CMYK)"]),
        ("PNG", "RGBA", (64, 32), ["PNG file named .jpg", "an alpha channel (mode RGBA)"]),
        ("TIFF", "F", (64, 32), ["TIFF file named .jpg", "32-bit float samples (mode F)"]),
        ("PNG", "1", (64, 32), ["PNG file named .jpg", "1-bit samples (mode 1)"]),
    ],
)
def test_image_flags_thresholds_and_modes(
    fmt: str, mode: str, size: tuple[int, int], flags: list[str]
) -> None:
    info = ImageInfo(fmt, mode, bit_depth(mode), *size)
    assert image_flags("RGB/0001.jpg", info) == flags


# ------------------------------------------------------------------------------------------- synth


def test_synth_then_stats_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`synth --like msvr310 --out DIR && stats --dataset msvr310 --root DIR`: a copy reads back unchanged."""
    argv = ["synth", "--like", "msvr310", "--out", str(tmp_path), "--ids", "12", "--seed", "3"]
    code, out, _ = run_cli(argv, capsys)
    assert code == 0 and out.strip() == str(tmp_path)
    code, out, _ = run_cli(["stats", "--dataset", "msvr310", "--root", str(tmp_path), "--json"], capsys)
    stats = json.loads(out)
    assert code == 0 and stats["train"]["ids"] == 8 and stats["gallery"]["ids"] == 4
    assert 0 < stats["query"]["ids"] <= stats["gallery"]["ids"] and stats["train"]["scenes"] >= 1
    code, _, err = run_cli(argv, capsys)  # the dataset exists now: refused, nothing overwritten
    assert code == 2 and "exists" in err
