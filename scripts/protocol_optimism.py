"""What selecting on the test split costs: a sweep over the ROL and KDL weights x seeds on the synthetic bench
(experiment=synthetic, from the proxy foundation), every job validated on held-out training identities and
tested once, then the configuration chosen on validation against the one chosen on test.

    python scripts/protocol_optimism.py --out outputs/optimism            # runs what is missing, then reports
    python scripts/protocol_optimism.py --out outputs/optimism --report   # the report only

Each job is one ``python -m mdreid.train`` into its own folder, skipped when its metrics.json exists, so a
killed study resumes. Both selections use the same trained models: the difference is the split that chose.
The report (report.json, report.md in --out) gives, over configurations ranked by their mean:

- the test score of the configuration with the best mean validation score (the honest choice);
- the test score of the configuration with the best mean test score (the old way), and the optimism between;
- the same per seed, as a single-seed sweep would choose, averaged over seeds;
- the spread over seeds (std of the test score per configuration).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from mdreid.reporting.seed_groups import group_jobs

ROL = (0.0, 0.5, 1.5, 3.0)
KDL = (0.0, 5.25)
SEEDS = (1, 2, 3)
VAL, TEST = "validation", "test"
# selection criteria: (name, validation key in metrics.json's "validation", test group(s) averaged)
CRITERIA = (
    ("score: RNT->RNT (mAP + R1) / 2", "val/score", ("matched/RNT->RNT/mAP", "matched/RNT->RNT/R1")),
    ("mismatched, all 42 pairs, mAP", "val/mismatched/avg42/mAP", ("mismatched/avg42/mAP",)),
)


def job_name(rol: float, kdl: float, seed: int) -> str:
    return f"rol{rol:g}_kdl{kdl:g}_seed{seed}"


def run_job(out: Path, rol: float, kdl: float, seed: int, epochs: int | None) -> None:
    folder = out / "runs" / job_name(rol, kdl, seed)
    if (folder / "metrics.json").is_file():
        return
    args = [
        sys.executable,
        "-m",
        "mdreid.train",
        "experiment=synthetic",
        f"model.loss.rol_weight={rol}",
        f"model.loss.kdl_weight={kdl}",
        f"seed={seed}",
        "logger=none",
        "eval.plots=false",
        f"paths.data_dir={out / 'data'}",
        f"hydra.run.dir={folder}",
        *([f"trainer.max_epochs={epochs}"] if epochs else []),
    ]
    start = time.time()
    env = {**os.environ, "WANDB_MODE": "disabled"}
    subprocess.run(args, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    print(f"{folder.name}: {time.time() - start:.0f} s", flush=True)


def read_jobs(out: Path, val_key: str, test_keys: tuple[str, ...]) -> list[tuple[dict, str, dict]]:
    """(overrides, seed, {VAL, TEST}) of every finished job for one criterion."""
    jobs = []
    for rol, kdl, seed in itertools.product(ROL, KDL, SEEDS):
        path = out / "runs" / job_name(rol, kdl, seed) / "metrics.json"
        if not path.is_file():
            continue
        payload = json.loads(path.read_text())
        test = float(np.mean([payload["groups"][k] for k in test_keys]))
        overrides = {"model.loss.rol_weight": f"{rol:g}", "model.loss.kdl_weight": f"{kdl:g}"}
        jobs.append((overrides, str(seed), {VAL: payload["validation"][val_key], TEST: test}))
    return jobs


def _std(values: list[float]) -> float | None:
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def select(jobs: list[tuple[dict, str, dict]]) -> dict:
    """Both selections over configurations (means over seeds) and per seed, with the spread over seeds."""
    groups = group_jobs(jobs)
    seeds = sorted({s for g in groups for s in g.values.get(TEST, {})})
    complete = [g for g in groups if len(g.values.get(TEST, {})) == len(seeds)]

    def label(g) -> str:
        return f"rol={g.overrides['model.loss.rol_weight']}, kdl={g.overrides['model.loss.kdl_weight']}"

    def mean(g, column: str) -> float:
        return float(np.mean(list(g.values[column].values())))

    on_val = max(complete, key=lambda g: mean(g, VAL))
    on_test = max(complete, key=lambda g: mean(g, TEST))
    per_seed_val = [max(complete, key=lambda g: g.values[VAL][s]).values[TEST][s] for s in seeds]
    per_seed_test = [max(complete, key=lambda g: g.values[TEST][s]).values[TEST][s] for s in seeds]
    rows = [
        {
            "config": label(g),
            "val_mean": mean(g, VAL),
            "val_std": _std(list(g.values[VAL].values())),
            "test_mean": mean(g, TEST),
            "test_std": _std(list(g.values[TEST].values())),
        }
        for g in sorted(complete, key=lambda g: -mean(g, VAL))
    ]
    stds = [r["test_std"] for r in rows if r["test_std"] is not None]
    return {
        "configurations": len(complete),
        "seeds": seeds,
        "chosen_on_validation": {"config": label(on_val), "test_mean": mean(on_val, TEST)},
        "chosen_on_test": {"config": label(on_test), "test_mean": mean(on_test, TEST)},
        "optimism_mean_over_seeds": mean(on_test, TEST) - mean(on_val, TEST),
        "single_seed": {
            "chosen_on_validation_test_mean": float(np.mean(per_seed_val)),
            "chosen_on_test_test_mean": float(np.mean(per_seed_test)),
            "optimism": float(np.mean(per_seed_test) - np.mean(per_seed_val)),
        },
        "test_std_over_seeds_median": float(np.median(stds)) if stds else None,
        "rows": rows,
    }


def _cell(mean: float, std: float | None) -> str:
    return f"{mean:.1f}" + ("" if std is None else f" ± {std:.1f}")


def report(out: Path) -> dict:
    results = {name: select(read_jobs(out, val_key, test_keys)) for name, val_key, test_keys in CRITERIA}
    lines = []
    for name, result in results.items():
        lines += [
            f"Selected by {name}:",
            "",
            "| configuration (ranked by its mean on validation) | validation | test |",
            "|---|---:|---:|",
            *(
                f"| {r['config']} | {_cell(r['val_mean'], r['val_std'])} | {_cell(r['test_mean'], r['test_std'])} |"
                for r in result["rows"]
            ),
            "",
        ]
    (out / "report.json").write_text(json.dumps(results, indent=2))
    (out / "report.md").write_text("\n".join(lines))
    print("\n".join(lines))
    print(json.dumps({n: {k: v for k, v in r.items() if k != "rows"} for n, r in results.items()}, indent=2))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--out", default="outputs/optimism", help="folder for the data, the runs and the report"
    )
    parser.add_argument("--epochs", type=int, default=None, help="override the experiment's 30 epochs")
    parser.add_argument("--report", action="store_true", help="only report on the runs already there")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    if not args.report:
        for seed, rol, kdl in itertools.product(SEEDS, ROL, KDL):  # seed by seed: a partial study is whole
            run_job(out, rol, kdl, seed, args.epochs)
    report(out)


if __name__ == "__main__":
    main()
