"""The MDReID ablation study (docs/method.md §9.4): seven variants x seeds, same budget, then mean ± std.

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
      --markdown docs/ablation.md --plot docs/images/ablation.png --json docs/ablation.json
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
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from mdreid.analysis.ablation_report import (
    GEOMETRY_FILE,
    METRICS_FILE,
    WALL_TIME_FILE,
    load_variant,
    write_report,
)
from mdreid.runtime.atomic_io import atomic_write_json
from mdreid.runtime.errors import MDReIDError, cli_errors

DROPOUT_P = 0.3  # per-modality drop probability of variant 6 (the README's example value)


@dataclass(frozen=True)
class Variant:
    name: str  # run folder and --variants name
    label: str  # column / legend name in the report
    overrides: tuple[str, ...]


VARIANTS: tuple[Variant, ...] = (
    Variant("baseline", "baseline (no MDL)", ("model=baseline",)),
    Variant("mdl", "MDL only", ("model.loss.rol_weight=0", "model.loss.kdl_weight=0")),
    Variant("mdl_rol", "MDL + ROL", ("model.loss.kdl_weight=0",)),
    Variant("mdl_kdl", "MDL + KDL", ("model.loss.rol_weight=0",)),
    Variant("full", "MDReID (MDL + ROL + KDL)", ()),
    Variant(
        "full_drop",
        f"MDReID + modality dropping (p={DROPOUT_P})",
        (f"data.modality_dropout={{p: {DROPOUT_P}, mode: sample}}",),
    ),
    # the baseline without the pretrained tower: what pretraining itself is worth (the tower then learns
    # at the heads' rate, as a tower without a prior needs)
    Variant(
        "baseline_scratch",
        "baseline from scratch (no pretrained tower)",
        ("model=baseline", "model.backbone.weights=null", "model.optim.backbone_lr=${model.optim.base_lr}"),
    ),
)
# Keys that change how a run executes, not what it computes (losses do not depend on num_workers,
# tests/test_faults.py; another thread count only reorders float sums): they may differ between a run's
# attempts and from the recorded overrides.
RUNTIME_KEYS: frozenset[str] = frozenset({"ckpt_path", "torch_threads", "data.num_workers"})


@dataclass(frozen=True)
class Run:
    variant: Variant
    seed: int
    run_dir: Path
    overrides: tuple[str, ...]  # task overrides, as .hydra/overrides.yaml records them (no ckpt_path)

    @property
    def name(self) -> str:
        return f"{self.variant.name}/seed{self.seed}"

    @property
    def done(self) -> bool:
        return (self.run_dir / METRICS_FILE).is_file()

    @property
    def last_ckpt(self) -> Path | None:
        path = self.run_dir / "checkpoints" / "last.ckpt"
        return path if path.is_file() else None

    def command(self) -> list[str]:
        """The train CLI call; resumes from last.ckpt when an earlier attempt left one."""
        resume = [f"ckpt_path={self.last_ckpt}"] if self.last_ckpt else []
        return [
            sys.executable,
            "-m",
            "mdreid.train",
            *self.overrides,
            *resume,
            f"hydra.run.dir={self.run_dir}",
        ]


def select_variants(names: Sequence[str] | None) -> list[Variant]:
    """The named variants in table order (all when ``names`` is None)."""
    by_name = {v.name: v for v in VARIANTS}
    unknown = [n for n in names or () if n not in by_name]
    if unknown:
        raise MDReIDError(f"unknown variant {unknown[0]!r}: choose from {', '.join(by_name)}")
    return [v for v in VARIANTS if names is None or v.name in names]


def common_overrides(experiment: str, epochs: int, data_dir: Path) -> list[str]:
    """The budget every variant shares.

    No validation (only the final test is reported); with ``check_val_every_n_epoch=1`` Lightning then writes
    last.ckpt at the end of every training epoch, which is what a killed run resumes from.
    """
    data = ["data.synth.preset=bench"] if experiment == "synthetic" else []
    return [
        f"experiment={experiment}",
        *data,
        f"paths.data_dir={data_dir}",
        f"trainer.max_epochs={epochs}",
        "trainer.check_val_every_n_epoch=1",
        "++trainer.limit_val_batches=0",
        "optimized_metric=null",
        "eval.pairs=all",
        "logger=csv",
        "plots=false",
    ]


def runtime_overrides(jobs: int) -> list[str]:
    """Concurrent runs split the cores: each gets cores // jobs torch threads and loads data in-process
    (a DataLoader worker per run would oversubscribe a small machine); one run keeps the CLI's defaults."""
    if jobs == 1:
        return []
    return [f"torch_threads={max(1, (os.cpu_count() or 1) // jobs)}", "data.num_workers=0"]


def plan_runs(
    variants: Sequence[Variant], seeds: Sequence[int], out: Path, common: Sequence[str], extra: Sequence[str]
) -> list[Run]:
    """Every (seed, variant) run, seed-major; ``extra`` comes last so it overrides anything before it."""
    return [
        Run(v, seed, out / v.name / f"seed{seed}", (*common, *v.overrides, f"seed={seed}", *extra))
        for seed in seeds
        for v in variants
    ]


def _meaningful(overrides: Sequence[str]) -> list[str]:
    return [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in RUNTIME_KEYS]


def check_recorded(run: Run) -> None:
    """Refuse to skip or resume a run folder that an earlier study filled with other overrides."""
    recorded_file = run.run_dir / ".hydra" / "overrides.yaml"
    if not recorded_file.is_file():
        return
    recorded = _meaningful(list(OmegaConf.load(recorded_file)))
    planned = _meaningful(run.overrides)
    if recorded != planned:
        was = [o for o in recorded if o not in planned] or ["the same in another order"]
        now = [o for o in planned if o not in recorded] or ["-"]
        raise MDReIDError(
            f"{run.run_dir} was run with other overrides "
            f"(recorded: {' '.join(was)}; planned: {' '.join(now)}): "
            "choose another --out, or delete that run folder to redo it"
        )


def composed(runs: Sequence[Run]) -> Iterator[tuple[Run, DictConfig]]:
    """Each run's training config, composed as the train CLI composes it; bad overrides are one error."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    from mdreid.runtime.config import config_dir

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        for run in runs:
            try:
                yield run, compose("train.yaml", overrides=list(run.overrides))
            except HydraException as err:
                raise MDReIDError(f"{run.name}: {'; '.join(str(err).splitlines())}") from err


def compose_and_prepare(runs: Sequence[Run]) -> None:
    """Compose every run's config (bad overrides fail here, in seconds) and index each dataset once, which
    generates the synthetic copy before concurrent runs could each start generating it."""
    from mdreid.runtime.builders import build_datamodule

    prepared: set[tuple[str, str]] = set()
    for _, cfg in composed(runs):
        key = (str(cfg.data.dataset), str(cfg.data.root))
        if key not in prepared:
            num_ids = build_datamodule(cfg).num_classes  # generates a synthetic copy if absent, indexes
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
    (``mdreid.analysis.feature_geometry``) and its final training losses, the evidence of whether ROL/KDL
    could act."""
    from mdreid.analysis.feature_geometry import feature_geometry
    from mdreid.runtime.builders import build_datamodule, load_module

    todo = [r for r in runs if r.done and r.last_ckpt and not (r.run_dir / GEOMETRY_FILE).is_file()]
    for run, cfg in composed(todo):
        datamodule = build_datamodule(cfg)
        datamodule.num_workers = 0
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
    """Read every planned run (relative paths keep a committed JSON free of this machine's folders)."""
    measure_geometry(runs)
    results = [
        load_variant(v.name, v.label, [os.path.relpath(r.run_dir) for r in runs if r.variant == v])
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


if __name__ == "__main__":
    sys.exit(main())
