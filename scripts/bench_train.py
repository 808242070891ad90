"""Benchmark MDReID training: step throughput, peak memory and MFU of the model, and the data pipeline's rate.

Presets (trailing Hydra overrides, e.g. ``trainer.precision=16-mixed``, change any key):

- ``tiny-cpu``: ``experiment=synthetic`` as is (``model/backbone=tiny``, 128x64, 32 triplets per step, fp32
  on CPU), i.e. what ``make demo`` trains.
- ``vitb16-gpu``: CLIP ViT-B/16 with random init (``weights: null``), 256x128, 64 triplets (192 images) per
  step, ``bf16-mixed`` on one CUDA GPU.

Model part (``analysis.train_bench``): the real ``ReIDModule`` (``mdreid.factory.build_module``
on the composed config) trained by the real Lightning Trainer (``mdreid.config.hydra.instantiate_trainer``, so
precision and torch threads are set as in a run): forward, MDReID objective, backward and the Adam step. Its
input is one PK-structured batch of random images already on the device, reused every step, so the data
pipeline is measured separately and the host-to-device copy is excluded. Step 0 is FLOP-counted
(``analysis.flops``) and the warmup steps are dropped; the timed window starts and ends with a device
synchronisation. ``--profile DIR`` profiles a few more steps (op table, Chrome trace, host syncs per step, GPU
busy share; ``analysis.profiling``).

Towers side by side (``analysis.tower_bench``): ``--backbone 'NAME [override ...]'``, repeated, runs the
model part for each ``model/backbone`` config in turn, ``--rounds`` times over (interleaved, so a shared
machine's load falls on all alike); ``--flops-only`` instead counts one step's FLOPs of each on the CPU, with
no trainer or timing (full-size towers on a machine without a GPU).

Data part (``analysis.pipeline_bench``): decode + augmentation of the real training ``Dataset``
(``TrainTripletDataset.__getitem__``, the code a DataLoader worker runs) on a synthetic copy
(``data.synth.preset``), timed in this process with one torch thread, as one worker has; ``--workers 1,4`` also
times real DataLoaders with that many workers. It then says whether ``--cores`` cores (the GPU machine's 16)
keep up with the measured step rate, and for a peak given by ``--peak-tflops`` (800 on CUDA) with the step rate
at the training-speed target of 40% MFU.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import torch

from analysis.pipeline_bench import bench_pipeline, keep_up_checks, print_pipeline
from analysis.tower_bench import compare_towers, count_model, parse_backbone, print_towers
from analysis.train_bench import (
    DEFAULT_STEPS,
    GPU_PEAK_TFLOPS,
    PRESETS,
    ModelBench,
    bench_config,
    bench_model,
    model_device,
    print_model,
)
from mdreid.files.atomic_io import atomic_write_json
from mdreid.process.errors import MDReIDError, cli_errors


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [
            ln.split(":", 1)[1].strip()
            for ln in cpuinfo.read_text().splitlines()
            if ln.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "gpu": gpu,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def parse_workers(text: str) -> list[int]:
    try:
        workers = [int(w) for w in text.split(",") if w.strip()]
    except ValueError:
        workers = [-1]
    if any(w < 1 for w in workers):
        raise MDReIDError(f"--workers {text!r}: give positive worker counts separated by commas, e.g. 1,4")
    return workers


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", choices=tuple(PRESETS), default="tiny-cpu")
    parser.add_argument("--steps", type=int, help="timed steps (default 10 tiny-cpu, 50 vitb16-gpu)")
    parser.add_argument("--warmup", type=int, help="untimed steps first, >= 1; step 0 is FLOP-counted")
    parser.add_argument("--batch", type=int, help="triplets per step (data.batch_size; a multiple of K)")
    parser.add_argument(
        "--threads", type=int, help="torch CPU threads (default: the config's runtime.torch_threads=auto)"
    )
    parser.add_argument(
        "--peak-tflops",
        type=float,
        help=f"peak TFLOP/s for MFU (default {GPU_PEAK_TFLOPS:.0f} on CUDA, none on CPU)",
    )
    parser.add_argument(
        "--pipeline-samples", type=int, default=256, help="triplets decoded + augmented per timing"
    )
    parser.add_argument("--workers", type=parse_workers, default=[], help="also time DataLoaders, e.g. 1,4")
    parser.add_argument(
        "--cores", type=int, default=16, help="cores of the GPU machine for the keep-up check"
    )
    parser.add_argument(
        "--data-root", help="synthetic data folder (generated when absent; default: temporary)"
    )
    parser.add_argument("--synth-preset", choices=("tiny", "bench"), default="bench")
    parser.add_argument(
        "--skip-model", action="store_true", help="time the data pipeline only (no GPU needed)"
    )
    parser.add_argument("--skip-pipeline", action="store_true", help="time the model only")
    parser.add_argument(
        "--profile", type=Path, help="profile extra steps after the timed ones; table + trace here"
    )
    parser.add_argument("--profile-steps", type=int, default=3, help="steps profiled with --profile")
    parser.add_argument(
        "--backbone",
        action="append",
        type=parse_backbone,
        default=[],
        help="'NAME [override ...]': a model/backbone config to bench (repeat for several, side by side)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="with --backbone: rounds over all of them")
    parser.add_argument(
        "--flops-only", action="store_true", help="with --backbone: count one step's FLOPs each, no timing"
    )
    parser.add_argument("--json", type=Path, help="write every figure and the machine here (atomically)")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. trainer.precision=16-mixed")
    args = parser.parse_args(argv)
    warmup, steps = DEFAULT_STEPS[args.preset]
    args.warmup = warmup if args.warmup is None else args.warmup
    args.steps = steps if args.steps is None else args.steps
    if args.warmup < 1 or args.steps < 1:
        raise MDReIDError("--warmup and --steps must be >= 1 (step 0 is FLOP-counted and never timed)")
    if args.pipeline_samples < 1 or args.profile_steps < 1:
        raise MDReIDError("--pipeline-samples and --profile-steps must be >= 1")
    if (args.flops_only or args.rounds != 1) and not args.backbone:
        raise MDReIDError("--flops-only and --rounds compare towers: name them with --backbone")
    if args.rounds < 1:
        raise MDReIDError("--rounds must be >= 1")
    if args.skip_model and args.skip_pipeline:
        raise MDReIDError("--skip-model and --skip-pipeline together leave nothing to measure: drop one")
    return args


@cli_errors
def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="mdreid-bench-") as tmp:
        overrides = [
            "callbacks=none",
            "logger=none",
            # stop after the batch iterable's length (max_epochs stays: it sets the LR schedule's length)
            f"trainer.max_steps={args.warmup + args.steps + (args.profile_steps if args.profile else 0)}",
            "+trainer.enable_checkpointing=false",
            "trainer.enable_progress_bar=false",
            "trainer.enable_model_summary=false",
            f"data.root={args.data_root or Path(tmp) / 'data'}",
            f"data.synth.preset={args.synth_preset}",
            *([f"data.batch_size={args.batch}"] if args.batch else []),
            *([f"runtime.torch_threads={args.threads}"] if args.threads else []),
            *args.overrides,
        ]
        cfg = bench_config(args.preset, overrides, str(Path(tmp) / "run"))
        triplets, k = int(cfg.data.batch_size), int(cfg.data.num_instances)
        if triplets % k:
            raise MDReIDError(f"--batch {triplets} must be a multiple of data.num_instances={k} (PK batches)")
        report: dict[str, Any] = {"preset": args.preset, "overrides": overrides, "machine": machine()}
        settings = ModelBench(args.warmup, args.steps, args.profile, args.profile_steps, args.peak_tflops)
        try:
            if args.backbone:
                cfgs = {
                    spec: bench_config(args.preset, [*overrides, *extra], str(Path(tmp) / "run"))
                    for spec, extra in args.backbone
                }
                report["towers"] = (
                    {name: count_model(c) for name, c in cfgs.items()}
                    if args.flops_only
                    else compare_towers(cfgs, model_device(cfg, args.preset), settings, args.rounds)
                )
                print_towers(report["towers"])
            elif not args.skip_model:
                report["model"] = bench_model(cfg, model_device(cfg, args.preset), settings)
                print_model(report["model"])
            if not (args.skip_pipeline or args.flops_only):
                report["pipeline"] = pipeline = bench_pipeline(cfg, args.pipeline_samples, args.workers)
                pipeline["keep_up"] = keep_up_checks(
                    cfg, report.get("model"), pipeline, args.cores, args.peak_tflops
                )
                print_pipeline(pipeline)
        finally:
            torch.set_num_threads(threads)
    if args.json:
        atomic_write_json(args.json, report)
        print(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    main()
