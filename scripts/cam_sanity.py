"""Do the Grad-CAM maps point where the identity is? Train on synthetic data whose only identity cue is a patch
in a fixed box, then measure the share of each map's mass inside that box, for the trained model and for a
randomly initialised one of the same architecture (the control).

    python scripts/cam_sanity.py --out outputs/cam_sanity [--epochs 30] [--device auto]

Maps: the similarity of each test query (all modalities) to its best-ranked true match in the gallery,
explained for every query modality through the shared (sh) and the specific (sp) feature. Pass: the trained
model's mean box mass >= 3x the box's area share, and the random model's < 1.5x. Prints a JSON summary and
writes it to OUT/summary.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

TRAINED_FACTOR, RANDOM_FACTOR = 3.0, 1.5


def train(out: Path, data: Path, epochs: int) -> Path:
    overrides = [
        "experiment=synthetic",
        "data.synth=null",
        f"data.root={data}",
        f"trainer.max_epochs={epochs}",
        "test=false",
        "eval.plots=false",
        "logger=csv",
        f"hydra.run.dir={out / 'train'}",
    ]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    subprocess.run([sys.executable, "-m", "mdreid.train", *overrides], check=True, env=env)
    return out / "train" / "checkpoints" / "last.ckpt"


def best_matches(explainer, benchmark, parity: int | None = None):
    """Per test query (of even or odd identities with ``parity``): the query, its best-ranked true match from
    another camera on RNT->RNT (code rule) and the two items' features."""
    from mdreid.explain.shares import Side, pair_scores

    queries, gallery = list(benchmark.query), list(benchmark.gallery)
    q_items, g_items = explainer.features(queries), explainer.features(gallery)
    scores = pair_scores(
        Side(q_items.sp, q_items.sh, q_items.present),
        Side(g_items.sp, g_items.sh, g_items.present),
        "RNT",
        "RNT",
        "code",
    )
    for i, query in enumerate(queries):
        same = [j for j, g in enumerate(gallery) if g.pid == query.pid and g.camid != query.camid]
        if not same or (parity is not None and query.pid % 2 != parity):
            continue
        best = max(same, key=lambda j: float(scores[i, j]))
        yield query, gallery[best], (q_items.rows(i, i + 1), g_items.rows(best, best + 1))


def masses(model, benchmark, device: str) -> dict[str, list[float]]:
    """Box mass of every query modality's map, per feature, for each query's best-ranked true match."""
    from mdreid.explain.explainer import Explainer
    from mdreid.explain.sanity import box_mass

    explainer = Explainer(model, device=device)
    out: dict[str, list[float]] = {"sh": [], "sp": []}
    for query, match, items in best_matches(explainer, benchmark):
        for feature in out:
            found = explainer.match(query, match, ("RNT", "RNT"), feature, items, sides=("query",))
            out[feature] += [box_mass(cam.cam) for cam in found.query.values() if cam.cam.sum() > 0]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="outputs/cam_sanity")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    data = out / "data"

    from mdreid.data.readers import load_benchmark
    from mdreid.data.synthetic.generate import generate
    from mdreid.explain.sanity import area_share
    from mdreid.factory import load_module
    from mdreid.module import ReIDModule

    if not (data / "RGBNT201").is_dir():
        generate("rgbnt201", data, cue=True)
    ckpt = out / "train" / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        ckpt = train(out, data, args.epochs)
    trained = load_module(ckpt)
    torch.manual_seed(0)
    random = ReIDModule.from_config(
        {**trained.hparams, "backbone": {**trained.hparams["backbone"], "weights": None}}
    ).eval()
    benchmark = load_benchmark("rgbnt201", str(data))
    share = area_share(*trained.hparams["image_size"])
    summary = {
        "area_share": share,
        "thresholds": {"trained": TRAINED_FACTOR * share, "random": RANDOM_FACTOR * share},
    }
    for name, model in (("trained", trained), ("random", random)):
        found = masses(model, benchmark, args.device)
        summary[name] = {
            f: {"mean": float(np.mean(v)), "median": float(np.median(v)), "maps": len(v)}
            for f, v in found.items()
        }
    summary["pass"] = all(
        summary["trained"][f]["mean"] >= TRAINED_FACTOR * share
        and summary["random"][f]["mean"] < RANDOM_FACTOR * share
        for f in ("sh", "sp")
    )
    text = json.dumps(summary, indent=2)
    (out / "summary.json").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
