"""The MDReID ablation study (docs/method.md §9.4): seven variants x seeds, same budget, then mean ± std.
The CLI is ``python scripts/ablation.py``; this module runs it.

Every run is the command a user would type, ``python -m mdreid.train experiment=synthetic
data.synth.preset=bench <budget> <variant> seed=<k> hydra.run.dir=<out>/<variant>/seed<k>``, in a subprocess;
its console output goes to ``console.log`` and its wall time to ``wall_time.json`` in its run folder. Runs go
seed-major (every variant of seed 0 first), so a study cut short still has comparable runs.

The synthetic experiment starts every variant from the shipped proxy foundation but the last, which is the
baseline from a random tower. Other settings of the synthetic benchmark come through ``--extra``: the
appearance coupling (``data.synth.coupling=0`` for independent modalities) or a vehicle layout
(``data.dataset=rgbnt100 data.synth.like=rgbnt100 'data.image_size=[64,128]'``); give each its own --out.

A killed study resumes where it stopped: a run with a metrics.json is skipped, a run with a
checkpoints/last.ckpt continues from it (``ckpt_path=``), any other run starts again. A run folder whose
recorded overrides (Hydra's .hydra/overrides.yaml) differ from the planned ones is refused, so one report
never mixes budgets. Before anything runs, every run's overrides are composed (a typo fails in seconds, not
after hours) and the data is generated once.

  python scripts/ablation.py --out outputs/ablation --jobs 2       # CPU, tiny ViT, 10 epochs: ~50 min
  python scripts/ablation.py --out outputs/ablation --report-only \\
      --plot docs/images/ablation.png --json docs/ablation.json    # tables in outputs/ablation/ablation.md
  python scripts/ablation.py --dry-run                             # the commands, nothing run

Budget on the 2-core CPU VM (bench preset: 838 training triplets, 23 steps of 32 per epoch; tiny ViT): a run
costs ~16 s of start-up and test plus ~21 s per epoch alone (``--jobs 1``: one torch thread and one loader
worker), or ~21 s plus ~31 s per epoch for each of two concurrent runs (``--jobs 2``, one thread each), i.e.
about 10.5 x (21 + 31 x epochs) s for the 21 runs.

Full size on a GPU (ViT-B/16 with CLIP weights at 256x128, the official recipe's batch, LRs, schedule and
fp16) on the same synthetic bench, or on the real RGBNT201 with its recorded experiment:

  python scripts/ablation.py --out outputs/ablation-vitb16 --epochs 50 --extra trainer=gpu \\
      trainer.precision=16-mixed model/backbone=vit_b16 \\
      model.backbone.weights=/weights/ViT-B-16-visual.safetensors 'data.image_size=[256,128]' \\
      data.batch_size=64 data.num_instances=8 data.eval_batch_size=128 data.num_workers=8 \\
      model.optim.base_lr=3.5e-4 model.optim.backbone_lr=5e-6 model.schedule.warmup_epochs=10
  python scripts/ablation.py --out outputs/ablation-rgbnt201 --experiment rgbnt201 --data-dir /datasets \\
      --epochs 50 --extra model.backbone.weights=/weights/ViT-B-16-visual.safetensors
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from analysis.ablation_plan import (
    VARIANTS,
    Run,
    Variant,
    check_recorded,
    common_overrides,
    composed,
    plan_runs,
    runtime_overrides,
    select_variants,
)
from analysis.ablation_report import GEOMETRY_FILE, WALL_TIME_FILE, load_variant, write_report
from analysis.feature_geometry import feature_geometry
from mdreid.data.data_config import DataConfig
from mdreid.factory import build_datamodule, load_module
from mdreid.files.atomic_io import atomic_write_json
from mdreid.process.errors import MDReIDError, cli_errors


def compose_and_prepare(runs: Sequence[Run]) -> None:
    """Compose every run's config (bad overrides fail here, in seconds) and index each dataset once, which
    generates the synthetic copy before concurrent runs could each start generating it."""
    prepared: set[tuple[str, str]] = set()
    for _, cfg in composed(runs):
        key = (str(cfg.data.dataset), str(cfg.data.root))
        if key not in prepared:
            # generates a synthetic copy if absent, indexes
            num_ids = build_datamodule(DataConfig.parse(cfg.data)).num_classes
            print(f"data: {key[0]} at {key[1]}, {num_ids} training identities", flush=True)
            prepared.add(key)


def final_losses(run_dir: Path) -> dict[str, float]:
    """The last epoch's mean training loss terms (weighted, as logged) from the run's CSV log."""
    path = run_dir / "csv" / "metrics.csv"
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        epochs = [row for row in csv.DictReader(f) if row.get("train/loss_epoch")]
    if not epochs:
        return {}
    last = epochs[-1]
    return {
        key.removeprefix("train/").removesuffix("_epoch"): float(value)
        for key, value in last.items()
        if key.startswith("train/") and key.endswith("_epoch") and value
    }


def measure_geometry(runs: Sequence[Run]) -> None:
    """Write each finished run's GEOMETRY_FILE once: the cosine geometry of its test features
    (``analysis.feature_geometry``) and its final training losses, the evidence of whether ROL/KDL
    could act."""
    todo = [r for r in runs if r.done and r.last_ckpt and not (r.run_dir / GEOMETRY_FILE).is_file()]
    for run, cfg in composed(todo):
        datamodule = build_datamodule(replace(DataConfig.parse(cfg.data), num_workers=0))
        datamodule.setup("test")
        module = load_module(run.last_ckpt)
        features = feature_geometry(module.net, datamodule.test_dataloader())
        atomic_write_json(
            run.run_dir / GEOMETRY_FILE, {"features": features, "final_losses": final_losses(run.run_dir)}
        )
        print(f"{run.name}: feature geometry {features}", flush=True)


def record_attempt(run: Run, wall_s: float, returncode: int, resumed_from: Path | None) -> None:
    """Append one attempt to the run's wall_time.json (the report sums attempts: a resumed run's total)."""
    path = run.run_dir / WALL_TIME_FILE
    attempts = json.loads(path.read_text())["attempts"] if path.is_file() else []
    resumed = str(resumed_from) if resumed_from else None
    attempts.append({"wall_s": round(wall_s, 1), "returncode": returncode, "resumed_from": resumed})
    atomic_write_json(path, {"attempts": attempts, "total_s": round(sum(a["wall_s"] for a in attempts), 1)})


def execute(run: Run, position: str, children: set[subprocess.Popen]) -> bool:
    """One training run in a subprocess (kept in ``children`` while it runs); True if it finished.

    Finished means metrics.json was written: Lightning ends a run stopped by SIGTERM with exit code 0.
    """
    run.run_dir.mkdir(parents=True, exist_ok=True)
    resumed_from = run.last_ckpt
    cmd = run.command()
    print(
        f"[{position}] {run.name}: {'resuming from ' + str(resumed_from) if resumed_from else 'start'}",
        flush=True,
    )
    start = time.monotonic()
    with (run.run_dir / "console.log").open("ab") as log:
        log.write(f"$ {shlex.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        children.add(proc)
        returncode = proc.wait()
        children.discard(proc)
    wall_s = time.monotonic() - start
    record_attempt(run, wall_s, returncode, resumed_from)
    finished = returncode == 0 and run.done
    status = "done" if finished else f"FAILED (exit {returncode}, see {run.run_dir / 'console.log'})"
    print(f"[{position}] {run.name}: {status} in {wall_s:.0f} s", flush=True)
    return finished


def run_study(runs: Sequence[Run], jobs: int) -> list[Run]:
    """Run every unfinished run, ``jobs`` at a time; returns the failed ones.

    If the study is stopped (Ctrl-C, SIGTERM), its runs are stopped too: an orphan still training would
    share its run folder with the same run of the resumed study.
    """
    todo = [r for r in runs if not r.done]
    print(f"{len(runs) - len(todo)} of {len(runs)} runs already finished; {len(todo)} to run", flush=True)
    children: set[subprocess.Popen] = set()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(execute, r, f"{i + 1}/{len(todo)}", children) for i, r in enumerate(todo)]
        try:
            finished = [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            for proc in list(children):
                proc.terminate()
            raise
    return [r for r, ok in zip(todo, finished, strict=True) if not ok]


def report(runs: Sequence[Run], variants: Sequence[Variant], args: argparse.Namespace) -> None:
    """Read every planned run; run folders are recorded relative to the study folder, so a committed JSON
    carries none of this machine's folders."""
    measure_geometry(runs)
    results = [
        load_variant(v.name, v.label, [r.run_dir for r in runs if r.variant == v], root=args.out)
        for v in variants
    ]
    written = write_report(results, args.markdown, args.plot, args.json)
    for kind, path in written.items():
        print(f"{kind}: {path}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("outputs/ablation"), help="study folder")
    parser.add_argument("--variants", nargs="+", help=f"subset of {', '.join(v.name for v in VARIANTS)}")
    parser.add_argument(
        "--seeds", nargs="+", type=int, default=[0, 1, 2], help="one run per seed and variant"
    )
    parser.add_argument(
        "--epochs", type=int, default=10, help="training epochs of every run (10: the 2-core CPU study)"
    )
    parser.add_argument(
        "--experiment", default="synthetic", help="experiment= config (synthetic: bench preset)"
    )
    parser.add_argument("--data-dir", type=Path, help="paths.data_dir (default: <out>/data)")
    parser.add_argument(
        "--jobs", type=int, default=1, help="runs at a time; the CPU cores are split among them"
    )
    parser.add_argument(
        "--extra", nargs="+", action="extend", default=[], help="Hydra overrides appended to every run"
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--report-only", action="store_true", help="only write the report of finished runs")
    mode.add_argument("--dry-run", action="store_true", help="print the planned commands and stop")
    parser.add_argument("--markdown", type=Path, help="report tables (default: <out>/ablation.md)")
    parser.add_argument("--plot", type=Path, help="grouped bar chart PNG (default: <out>/ablation.png)")
    parser.add_argument("--json", type=Path, help="per-seed numbers (default: <out>/ablation.json)")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.jobs < 1:
        raise MDReIDError(f"--epochs and --jobs must be >= 1, got {args.epochs} and {args.jobs}")
    args.out = args.out.resolve()
    args.data_dir = (args.data_dir or args.out / "data").resolve()
    args.markdown = args.markdown or args.out / "ablation.md"
    args.plot = args.plot or args.out / "ablation.png"
    args.json = args.json or args.out / "ablation.json"
    return args


@cli_errors
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    variants = select_variants(args.variants)
    seeds = list(dict.fromkeys(args.seeds))
    common = common_overrides(args.experiment, args.epochs, args.data_dir)
    runs = plan_runs(variants, seeds, args.out, common, [*runtime_overrides(args.jobs), *args.extra])
    if args.dry_run:
        for run in runs:
            print(
                f"# {run.name}{' (finished: skipped)' if run.done else ''}",
                shlex.join(run.command()),
                sep="\n",
            )
        return 0
    if not args.report_only:
        for run in runs:
            check_recorded(run)
        compose_and_prepare(runs)
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))  # -> stop the runs too
        failed = run_study(runs, args.jobs)
        if failed:
            names = ", ".join(r.name for r in failed)
            print(
                f"error: {len(failed)} run(s) failed ({names}); fix the cause and rerun to resume",
                file=sys.stderr,
            )
            return 1
    report(runs, variants, args)
    return 0
