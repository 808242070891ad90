"""`make demo`: synthetic data -> training -> any-to-any evaluation -> plots, on a CPU in a few minutes.

Every step is the same command a user would type, so the demo doubles as a walkthrough of the CLIs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path


def step(title: str, args: list[str], env: dict[str, str]) -> None:
    print(f"\n=== {title}\n$ {' '.join(args)}", flush=True)
    start = time.time()
    subprocess.run([sys.executable, *args], check=True, env=env)
    print(f"=== done in {time.time() - start:.0f}s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="outputs/demo", help="folder for the data, the run and the plots")
    parser.add_argument("--epochs", type=int, default=None, help="override the synthetic experiment's epochs")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    data = out / "data"
    env = {**os.environ, "WANDB_MODE": os.environ.get("WANDB_MODE", "offline"), "MDREID_DATA": str(data)}

    if not (data / "synthetic" / "RGBNT201").is_dir():
        step(
            "1/3 synthetic RGB/NIR/TIR data (RGBNT201 layout)",
            ["-m", "mdreid.data", "synth", "--like", "rgbnt201", "--out", str(data / "synthetic")],
            env,
        )
    step(
        "stats of the synthetic dataset",
        ["-m", "mdreid.data", "stats", "--dataset", "rgbnt201", "--root", str(data / "synthetic")],
        env,
    )
    train = [
        "-m",
        "mdreid.train",
        "experiment=synthetic",
        f"hydra.run.dir={out / 'train'}",
        "test=false",
        "eval.plots=false",
        # a final run: it selects nothing (the last epoch is evaluated), so it trains on every identity
        "data.val=none",
    ]
    if args.epochs:
        train.append(f"trainer.max_epochs={args.epochs}")
    step("2/3 training MDReID (tiny ViT, CPU)", train, env)
    ckpt = out / "train" / "checkpoints" / "last.ckpt"
    step(
        "3/3 any-to-any evaluation: 7 x 7 query/gallery modality subsets",
        ["-m", "mdreid.eval", "experiment=synthetic", f"ckpt_path={ckpt}", f"hydra.run.dir={out / 'eval'}"],
        env,
    )

    print("\nResults:")
    for path in sorted((out / "eval").glob("metrics.*")) + sorted((out / "eval" / "plots").glob("*.png")):
        print(f"  {path}")


if __name__ == "__main__":
    main()
