"""Tracker demonstration: BoT-SORT (boxmot) on a synthetic multi-spectral video, with mdreid's R+N+T
appearance, with motion/IoU only, and with RGB-only appearance, scored by py-motmetrics (IDF1, ID switches).

The video: ``--ids`` identities of the synthetic generator walking on crossing paths, RGB off in the
``--night`` stretch, detections from the ground truth jittered by a pixel or two, a person more than half
hidden undetected and 5% of the others missed. Every variant runs the same tracker with the same settings
on the same detections; only the embeddings differ (none for motion/IoU).

    pip install 'mdreid[track]'     # boxmot and motmetrics
    python scripts/track_demo.py --ckpt RUN/checkpoints/last.ckpt --out outputs/track_demo

motmetrics 1.4.0 (the latest release) computes its IoU distance matrix (``distances.iou_matrix``) with
``np.asfarray``, which NumPy 2 removed. ``iou_distances`` builds the same matrix from motmetrics' own
``distances.boxiou`` instead, so NumPy is left as it is (tests/test_track_demo.py checks the two agree).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch

from mdreid.data.synthetic.video import VideoSpec, boxes, frames, mot_lines
from mdreid.embed.embedder import Embedder
from mdreid.embed.tracker import MultiSpectralBackend
from mdreid.files.atomic_io import atomic_write_json

VARIANTS = ("mdreid features (R+N+T present)", "motion/IoU only", "RGB-only features")


def detections(spec: VideoSpec) -> dict[int, np.ndarray]:
    """Per frame, the detector's ``x1, y1, x2, y2, score`` rows (0-based pixels)."""
    out: dict[int, list] = {}
    for line in mot_lines(spec, detections=True):
        f, _, x, y, w, h, score, *_ = (float(v) for v in line.split(","))
        out.setdefault(int(f), []).append([x - 1, y - 1, x - 1 + w, y - 1 + h, score])
    return {f: np.array(rows, dtype=np.float32) for f, rows in out.items()}


def track(
    spec: VideoSpec, video: dict, dets: dict, backend: MultiSpectralBackend | None
) -> dict[int, np.ndarray]:
    """Per frame, the tracker's ``id, x1, y1, x2, y2`` rows."""
    from boxmot import BotSort
    from boxmot.structures import Boxes, Detections

    tracker = BotSort(use_cmc=False, frame_rate=spec.fps, use_embeddings=backend is not None)
    out = {}
    for f in range(1, spec.frames + 1):
        rows = dets.get(f, np.zeros((0, 5), np.float32))
        emb = None
        if backend is not None:
            named = dict(zip(("rgb", "nir", "tir"), video[f], strict=True))
            emb = torch.from_numpy(backend.get_features(rows[:, :4], named))
        d = Detections(
            geometry=Boxes(torch.from_numpy(rows[:, :4].copy())),
            scores=torch.from_numpy(rows[:, 4].copy()),
            class_ids=torch.zeros(len(rows), dtype=torch.int64),
            sample_id=str(f),
            embeddings=emb,
        )
        result = tracker.update(d, None)
        ids = result.track_ids.numpy()[:, None].astype(np.float32)
        out[f] = (
            np.concatenate([ids, result.geometry.values.numpy()], axis=1) if len(ids) else np.zeros((0, 5))
        )
    return out


def truth(spec: VideoSpec) -> dict[int, np.ndarray]:
    """Per frame, the ground truth's ``id, x1, y1, x2, y2`` rows (the layout of ``track``'s output)."""
    out: dict[int, list] = {}
    sh, sw = spec.sprite
    for b in boxes(spec):
        out.setdefault(b.frame, []).append([b.pid, b.left, b.top, b.left + sw, b.top + sh])
    return {f: np.array(rows, dtype=np.float64) for f, rows in out.items()}


def iou_distances(gt_xywh: np.ndarray, hyp_xywh: np.ndarray, max_iou: float = 0.5) -> np.ndarray:
    """motmetrics' ``iou_matrix``: ``1 - IoU`` of ``x, y, w, h`` rows, NaN (cannot match) above ``max_iou``."""
    import motmetrics as mm

    gt, hyp = np.asarray(gt_xywh, dtype=float), np.asarray(hyp_xywh, dtype=float)
    dist = 1 - mm.distances.boxiou(gt[:, None], hyp[None, :])
    return np.where(dist > max_iou, np.nan, dist)


def score(gt: dict[int, np.ndarray], hyp: dict[int, np.ndarray], frames: int) -> dict[str, float]:
    """IDF1, ID switches, MOTA and the number of true identities of ``hyp`` against ``gt`` (both per frame
    ``id, x1, y1, x2, y2`` rows) over frames ``1..frames``; a pair matches at IoU >= 0.5."""
    import motmetrics as mm

    acc = mm.MOTAccumulator(auto_id=True)
    for f in range(1, frames + 1):
        g, h = (rows.get(f, np.zeros((0, 5))).reshape(-1, 5) for rows in (gt, hyp))
        acc.update(
            g[:, 0].astype(int).tolist(),
            h[:, 0].astype(int).tolist(),
            iou_distances(xywh(g[:, 1:]), xywh(h[:, 1:])),
        )
    summary = mm.metrics.create().compute(
        acc, metrics=["idf1", "num_switches", "mota", "num_unique_objects"], name="demo"
    )
    return {k: float(summary[k].iloc[0]) for k in summary.columns}


def xywh(xyxy: np.ndarray) -> np.ndarray:
    return np.column_stack([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--out", default="outputs/track_demo")
    p.add_argument("--ids", type=int, default=8)
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--night", type=int, nargs=2, default=(61, 140))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    spec = VideoSpec(
        ids=args.ids, frames=args.frames, size=(128, 384), night=tuple(args.night), fps=10, seed=args.seed
    )
    video = dict(frames(spec))
    dets = detections(spec)
    embedder = Embedder.from_checkpoint(args.ckpt, device="cpu")
    backends = [MultiSpectralBackend(embedder), None, MultiSpectralBackend(embedder, modalities=("rgb",))]
    rows = []
    for name, backend in zip(VARIANTS, backends, strict=True):
        start = time.perf_counter()
        metrics = score(truth(spec), track(spec, video, dets, backend), spec.frames)
        rows.append({"variant": name, **metrics, "seconds": time.perf_counter() - start})
        print(
            f"{name}: IDF1 {100 * metrics['idf1']:.1f}, ID switches {int(metrics['num_switches'])}, MOTA {100 * metrics['mota']:.1f}"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "spec": {**spec.__dict__},
        "detections": sum(len(d) for d in dets.values()),
        "checkpoint": str(args.ckpt),
        "machine": platform.platform(),
        "rows": rows,
    }
    atomic_write_json(out / "track_demo.json", record)
    print(f"wrote {out / 'track_demo.json'}")


if __name__ == "__main__":
    main()
