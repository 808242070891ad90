"""Does a 16-bit copy of a dataset train like the 8-bit original? (docs/results.md, "High-bit-depth images")

Writes a tiny synthetic RGBNT201 copy and its manifest, then copies of that manifest whose NIR and TIR images
are grey PNGs: 8-bit (``grey8``, the reference), 16-bit (``grey16``, each value v stored as v * 257) and a
constant 255 image (``clipped``, what PIL's ``convert("RGB")`` made of a 16-bit file before the rule). Each
variant trains with ``experiment=synthetic_manifest`` for every seed, and the table gives the test score
((mAP + R1) / 2 of RNT->RNT) and the T->T, N->N and NT->NT mAP.

    python scripts/high_bit_depth_check.py --out outputs/high_bit_depth --epochs 15 --seeds 1 2 3 \
        --variants grey8 "grey16 stretch" "grey16 range" clipped
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from mdreid.data.readers import load_benchmark
from mdreid.data.readers.manifest import write_manifest
from mdreid.data.synthetic.generate import generate
from mdreid.data.synthetic.high_bit_copy import high_bit_copy

# variant -> (copy kind or None for the colour original, extra overrides)
VARIANTS: dict[str, tuple[str | None, list[str]]] = {
    "colour8": (None, []),
    "grey8": ("grey8", []),
    "grey16 stretch": ("grey16", []),
    "grey16 range": ("grey16", ["data.high_bit_depth.mode=range", "data.high_bit_depth.range=[0,65535]"]),
    "clipped": ("clipped", []),
}


def manifests(out: Path) -> dict[str, Path]:
    """The original manifest of a tiny synthetic RGBNT201 copy and its grey copies, written once."""
    data = out / "data"
    if not (data / "RGBNT201").exists():
        generate("rgbnt201", data, preset="tiny", seed=0)
    original = data / "colour8.csv"
    if not original.exists():
        write_manifest(load_benchmark("rgbnt201", data), original)
    paths = {}
    for name, (kind, _) in VARIANTS.items():
        if kind is None:
            paths[name] = original
            continue
        path = out / kind / "manifest.csv"
        if not path.exists():
            high_bit_copy(original, path, kind)
        paths[name] = path
    return paths


def run(manifest: Path, extra: list[str], seed: int, epochs: int, run_dir: Path) -> dict[str, float]:
    """Train and test one variant; returns its score and the T->T, N->N and NT->NT mAP."""
    metrics = run_dir / "metrics.json"
    if not metrics.exists():
        command = [
            sys.executable,
            "-m",
            "mdreid.train",
            "experiment=synthetic_manifest",
            f"data.manifest={manifest}",
            "data.synth=null",
            "logger=csv",
            "eval.plots=false",
            f"seed={seed}",
            f"trainer.max_epochs={epochs}",
            f"trainer.check_val_every_n_epoch={epochs}",
            f"hydra.run.dir={run_dir}",
            *extra,
        ]
        print(" ".join(command[1:]), flush=True)
        subprocess.run(command, check=True, env={**os.environ, "WANDB_MODE": "disabled"})
    result = json.loads(metrics.read_text())
    rows = {(r["query"], r["gallery"]): r for r in result["rows"]}
    rnt = rows[("RNT", "RNT")]
    return {
        "score": (rnt["mAP"] + rnt["R1"]) / 2,
        "T->T mAP": rows[("T", "T")]["mAP"],
        "N->N mAP": rows[("N", "N")]["mAP"],
        "NT->NT mAP": rows[("NT", "NT")]["mAP"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    args = parser.parse_args()
    out = args.out.absolute()
    paths = manifests(out)
    table = {}
    for name in args.variants:
        for seed in args.seeds:
            slug = name.replace(" ", "_")
            table[(name, seed)] = run(
                paths[name],
                VARIANTS[name][1],
                seed,
                args.epochs,
                out / "runs" / f"{slug}_e{args.epochs}_s{seed}",
            )
    print("variant | seed | score | T->T mAP | N->N mAP | NT->NT mAP")
    print("---|---:|---:|---:|---:|---:")
    for (name, seed), values in table.items():
        print(f"{name} | {seed} | " + " | ".join(f"{v:.1f}" for v in values.values()))


if __name__ == "__main__":
    main()
