"""The track extra at work: BoT-SORT (boxmot) fed mdreid features through the appearance-backend contract,
py-motmetrics scores on a case worked out by hand, and scripts/track_demo.py on a tiny video."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import TINY_OVERRIDES, compose_cfg, save_weights_checkpoint
from mdreid.data.synthetic.video import VideoSpec, frames, mot_lines
from mdreid.embed.embedder import Embedder
from mdreid.embed.tracker import MultiSpectralBackend
from mdreid.factory import build_module

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "track_demo.py"
_spec = importlib.util.spec_from_file_location("track_demo_script", SCRIPT)
demo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(demo)


@pytest.fixture(scope="module")
def tiny_module():
    torch.manual_seed(0)
    return build_module(
        compose_cfg("train.yaml", TINY_OVERRIDES),
        SimpleNamespace(num_classes=4, num_cameras=2, junk_rule="camera"),
    )


def test_score_of_a_crafted_swap() -> None:
    """Two people over 4 frames; the tracker swaps their ids at frame 3, and at frame 4 its box for person 2
    is 6 px off (IoU 0.25 < 0.5: a miss and a false alarm). By hand: 2 switches; MOTA 1 - (1 + 1 + 2) / 8;
    the best id pairing (1-7, 2-8) covers 4 of 8 boxes on each side, so IDF1 = 2 * 4 / (8 + 8)."""
    a, b = [0, 0, 10, 20], [50, 0, 60, 20]
    gt = {f: np.array([[1, *a], [2, *b]]) for f in range(1, 5)}
    hyp = {
        1: np.array([[7, *a], [8, *b]]),
        2: np.array([[7, *a], [8, *b]]),
        3: np.array([[8, *a], [7, *b]]),
        4: np.array([[8, *a], [7, 56, 0, 66, 20]]),
    }
    got = demo.score(gt, hyp, frames=4)
    assert got == pytest.approx({"idf1": 0.5, "num_switches": 2, "mota": 0.5, "num_unique_objects": 2})
    assert demo.score(gt, gt, frames=4) == pytest.approx(
        {"idf1": 1.0, "num_switches": 0, "mota": 1.0, "num_unique_objects": 2}
    )


def test_iou_distances_are_motmetrics_iou_matrix(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's IoU matrix is motmetrics' own, which needs np.asfarray: restored here for this test only."""
    import motmetrics as mm

    monkeypatch.setattr(np, "asfarray", lambda x, dtype=float: np.asarray(x, dtype=dtype), raising=False)
    rng = np.random.default_rng(0)
    gt = np.column_stack([rng.uniform(0, 40, (7, 2)), rng.uniform(5, 20, (7, 2))])
    hyp = np.concatenate([gt[:4] + [1, 0, 0, 0], gt[4:5] + [30, 0, 0, 0]])  # IoU >= 4/6, and a miss
    want = mm.distances.iou_matrix(gt, hyp, max_iou=0.5)
    got = demo.iou_distances(gt, hyp)
    np.testing.assert_array_equal(got, want)
    assert np.isnan(got).any() and not np.isnan(got.diagonal()[:4]).any()


def test_botsort_tracks_with_mdreid_features(tiny_module) -> None:
    """boxmot's BotSort calls the backend itself (``reid_model=``, one BGR frame per update). Two people
    cross; with true boxes it keeps both ids (no switch), and its only misses are the first frame of each
    person after the first, whose track BoT-SORT confirms one frame late."""
    from boxmot import BotSort

    backend = MultiSpectralBackend(Embedder(tiny_module, device="cpu"))
    spec = VideoSpec(ids=2, frames=30)
    video, gt = dict(frames(spec)), demo.truth(spec)
    tracker = BotSort(reid_model=backend, use_cmc=False, frame_rate=spec.fps)
    hyp = {}
    for f in range(1, spec.frames + 1):
        g = gt.get(f, np.zeros((0, 5)))
        dets = np.column_stack([g[:, 1:], np.full(len(g), 0.9), np.zeros(len(g))]).astype(np.float32)
        bgr = np.ascontiguousarray(video[f][0][..., ::-1])
        out = tracker.update(dets, bgr)  # x1, y1, x2, y2, id, conf, cls, det_ind
        hyp[f] = out[:, [4, 0, 1, 2, 3]]
        # each track holds the vector mdreid gave its detection in this frame
        want = backend.get_features(dets[out[:, 7].astype(int), :4], bgr)
        feats = {t.id: t.curr_feat for t in tracker.active_tracks}
        got = np.array([feats[i] for i in out[:, 4]]).reshape(want.shape)
        np.testing.assert_allclose(got, want, atol=1e-6)
    n = sum(len(rows) for rows in gt.values())
    late = spec.ids - 1
    assert demo.score(gt, hyp, spec.frames) == pytest.approx(
        {
            "idf1": 2 * (n - late) / (2 * n - late),
            "num_switches": 0,
            "mota": 1 - late / n,
            "num_unique_objects": spec.ids,
        }
    )


def test_demo_end_to_end(tiny_module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The three variants on a short video with RGB off in frames 25-55, from a checkpoint, into
    track_demo.json. Two people walk slowly enough for motion alone to keep them apart; the RGB-only model
    has no vector at night, which costs BoT-SORT identities, and the multi-spectral one does not."""
    ckpt = save_weights_checkpoint(tiny_module, tmp_path / "tiny.ckpt")
    args = ["--ckpt", str(ckpt), "--out", str(tmp_path / "out"), "--ids", "2", "--frames", "80"]
    monkeypatch.setattr(sys, "argv", ["track_demo.py", *args, "--night", "25", "55"])
    demo.main()
    record = json.loads((tmp_path / "out" / "track_demo.json").read_text())
    spec = VideoSpec(ids=2, frames=80, size=(128, 384), night=(25, 55), fps=10)
    assert record["detections"] == len(mot_lines(spec, detections=True))
    assert [r["variant"] for r in record["rows"]] == list(demo.VARIANTS)
    mdreid, motion, rgb_only = record["rows"]
    for row in record["rows"]:
        assert row["num_unique_objects"] == 2 and 0 < row["idf1"] <= 1 and row["mota"] <= 1
    assert motion["num_switches"] == 0 and motion["idf1"] > 0.9
    assert mdreid["idf1"] > rgb_only["idf1"] and mdreid["num_switches"] < rgb_only["num_switches"]
