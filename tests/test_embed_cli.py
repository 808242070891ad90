"""``python -m mdreid.embed``: a manifest, a frame folder and a synthetic multi-spectral video with detections
become feature files with the Embedder's features and the right metadata; two CPU processes give the same
file as one; each bad input is one ``error:`` line."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import TINY_OVERRIDES, compose_cfg, save_weights_checkpoint
from mdreid.data.readers import load_benchmark
from mdreid.data.synthetic.generate import generate
from mdreid.data.synthetic.video import VideoSpec, boxes, frames, write_video
from mdreid.embed.cli import main
from mdreid.embed.embedder import Embedder
from mdreid.factory import build_module
from mdreid.feature_file import read_feature_file
from mdreid.index.cli import main as index_main
from mdreid.index.store import GalleryStore

SPEC = VideoSpec(ids=3, frames=16, night=(6, 9))


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    tmp = tmp_path_factory.mktemp("embed_cli")
    cfg = compose_cfg("train.yaml", TINY_OVERRIDES)
    torch.manual_seed(0)
    module = build_module(cfg, SimpleNamespace(num_classes=12, num_cameras=3, junk_rule="camera"))
    ckpt = save_weights_checkpoint(module, tmp / "m.ckpt")
    generate("rgbnt201", tmp / "data", ids=6, seed=0, preset="tiny")
    records = load_benchmark("rgbnt201", tmp / "data").query[:10]
    videos = write_video(SPEC, tmp / "video")
    return SimpleNamespace(tmp=tmp, ckpt=ckpt, records=records, videos=videos)


def _run(setup: SimpleNamespace, out: Path, *args: str) -> object:
    main(["--ckpt", str(setup.ckpt), "--out", str(out), "--no-progress", "--batch-size", "4", *args])
    return read_feature_file(out)


def _error(setup: SimpleNamespace, capsys: pytest.CaptureFixture, *args: str) -> str:
    with pytest.raises(SystemExit) as info:
        main(["--ckpt", str(setup.ckpt), "--out", str(setup.tmp / "bad.safetensors"), "--no-progress", *args])
    assert info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_a_manifest_becomes_a_feature_file_of_the_embedders_features(setup: SimpleNamespace) -> None:
    path = setup.tmp / "items.csv"
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["split", "pid", "camid", "rgb", "nir", "tir"])
        for i, r in enumerate(setup.records):
            paths = [p if (i + m) % 4 else "" for m, p in enumerate(r.paths)]  # some modalities absent
            out.writerow(["query" if i < 3 else "gallery", r.pid, r.camid, *paths])
    saved = _run(setup, setup.tmp / "m.safetensors", "--manifest", str(path))
    embedder = Embedder.from_checkpoint(setup.ckpt, device="cpu", batch_size=4)
    given = [[p if (i + m) % 4 else None for m, p in enumerate(r.paths)] for i, r in enumerate(setup.records)]
    expected = embedder.embed(*zip(*given, strict=True), camid=[r.camid for r in setup.records])
    assert torch.equal(saved.features, expected.sp) and torch.equal(saved.shared, expected.sh)
    assert torch.equal(saved.present, expected.present) and saved.present.sum() < 30
    assert (
        saved.is_query.tolist() == [True] * 3 + [False] * 7
        and saved.is_gallery.tolist() == [False] * 3 + [True] * 7
    )
    assert saved.pid.tolist() == [r.pid for r in setup.records] and saved.method == "mdreid.embed"
    assert saved.names[1] == setup.records[1].paths[0]
    # the file is one mdreid.index builds from and searches with (no checkpoint, no images)
    index = setup.tmp / "idx"
    assert index_main(["build", str(index), "--features", str(setup.tmp / "m.safetensors")]) in (0, None)
    assert GalleryStore.open(index).size == 7  # the gallery rows


def test_a_frame_folder_needs_every_frame_or_says_absent(setup: SimpleNamespace, capsys) -> None:
    root = setup.tmp / "frames"
    for m, name in enumerate(("rgb", "tir")):
        (root / name).mkdir(parents=True)
        for r in setup.records[:4]:
            shutil.copy(r.paths[2 * m], root / name / f"{r.pid:04d}_{r.camid}_{Path(r.paths[0]).stem}.jpg")
    gone = sorted((root / "tir").iterdir())[1]
    gone.unlink()
    line = _error(setup, capsys, "--frames", str(root))
    assert f"{root / 'tir'}: missing frame {gone.name} (1 of 4 frames missing)" in line
    saved = _run(
        setup, setup.tmp / "f.safetensors", "--frames", str(root), "--missing", "absent", "--camid", "1"
    )
    assert saved.present.tolist() == [
        [True, False, True],
        [True, False, False],
        [True, False, True],
        [True, False, True],
    ]
    assert saved.names == sorted(p.name for p in (root / "rgb").iterdir()) and saved.camid.tolist() == [1] * 4
    assert saved.frame.tolist() == [1, 2, 3, 4]


def _crops(spec: VideoSpec) -> list[list[np.ndarray | None]]:
    """Each ground-truth box's crop in every modality, from the generator's own frames (the video is lossless)."""
    images = dict(frames(spec))
    sh, sw = spec.sprite
    return [
        [None if im is None else im[b.top : b.top + sh, b.left : b.left + sw] for im in images[b.frame]]
        for b in boxes(spec)
    ]


def test_videos_with_detections_on_one_and_two_processes(setup: SimpleNamespace) -> None:
    v = setup.videos
    args = ["--video", f"rgb={v['rgb']}", "--video", f"nir={v['nir']}", "--video", f"tir={v['tir']}"]
    args += ["--detections", str(v["gt"]), "--align", "timestamp", "--camid", "0"]
    one = _run(setup, setup.tmp / "v1.safetensors", *args)
    truth = boxes(SPEC)
    assert one.frame.tolist() == [b.frame for b in truth] and one.track.tolist() == [b.pid for b in truth]
    assert one.box[0].tolist() == [truth[0].left + 1, truth[0].top + 1, 32, 64]
    night = (one.frame >= 6) & (one.frame <= 9)
    assert one.present[:, 0].tolist() == (~night).tolist() and bool(one.present[:, 1:].all())
    embedder = Embedder.from_checkpoint(setup.ckpt, device="cpu", batch_size=4)
    expected = embedder.embed(*zip(*_crops(SPEC), strict=True), camid=0)
    assert torch.equal(one.features, expected.sp) and torch.equal(one.shared, expected.sh)
    two = _run(setup, setup.tmp / "v2.safetensors", *args, "--devices", "2", "--accelerator", "cpu")
    assert torch.equal(two.features, one.features) and torch.equal(two.shared, one.shared)
    assert torch.equal(two.frame, one.frame) and torch.equal(two.box, one.box)


def test_bad_video_inputs_are_one_error_line(setup: SimpleNamespace, capsys) -> None:
    v = setup.videos
    rgb_tir = ["--video", f"rgb={v['rgb']}", "--video", f"tir={v['tir']}"]
    line = _error(setup, capsys, *rgb_tir, "--detections", str(v["gt"]))
    assert (
        "the modalities' videos have different lengths" in line
        and "12 frames" in line
        and "16 frames" in line
    )
    late = setup.tmp / "late.txt"
    late.write_text("17,1,5,5,32,64,1,-1,-1,-1\n")
    line = _error(setup, capsys, "--video", f"tir={v['tir']}", "--detections", str(late))
    assert f"{late} line 1: missing frame 17: {v['tir']} has 16 frames" in line
    wide = setup.tmp / "wide.txt"
    wide.write_text("1,1,5,5,32,64,1\n2,1,170,5,32,64,1\n")
    line = _error(setup, capsys, "--video", f"tir={v['tir']}", "--detections", str(wide))
    assert f"{wide} line 2: box (x=170, y=5, w=32, h=64) lies outside frame 2 (192x96" in line
    garbage = setup.tmp / "broken.mp4"
    garbage.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    line = _error(setup, capsys, "--video", f"tir={garbage}", "--detections", str(v["gt"]))
    assert f"{garbage}: cannot decode the video" in line
    line = _error(setup, capsys, "--video", f"nir={v['nir']}")
    assert "--video needs --detections FILE" in line
