"""The data half of the training benchmark (scripts/bench_train.py): decode + augmentation of the real training
``Dataset`` (the code a DataLoader worker runs) on a synthetic copy, and whether a machine's cores keep up with
a measured or targeted step rate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import replace
from itertools import islice
from typing import Any

import torch
from omegaconf import DictConfig

from analysis.flops import analytic_train_flops
from analysis.train_bench import GPU_PEAK_TFLOPS, HEAD_DATA, TARGET_MFU
from mdreid.data.data_config import DataConfig
from mdreid.data.triplet_dataset import read_modalities
from mdreid.factory import build_datamodule, build_module


def train_draws(datamodule: Any, count: int) -> list:
    """The first ``count`` PK draws of the real training sampler, over as many epochs as needed."""
    sampler = datamodule.train_dataloader().sampler
    draws: list = []
    epoch = 0
    while len(draws) < count:
        sampler.set_epoch(epoch)
        draws.extend(islice(iter(sampler), count - len(draws)))
        epoch += 1
    return draws


def time_in_process(dataset: Any, draws: list) -> dict[str, Any]:
    """Decode alone, then decode + augmentation (``__getitem__``), each over the same draws, one thread."""
    for draw in draws[:4]:  # warm up PIL/torchvision
        dataset[draw]
    start = time.perf_counter()
    for draw in draws:
        read_modalities(dataset.records[draw.index])
    decode_s = time.perf_counter() - start
    start = time.perf_counter()
    for draw in draws:
        dataset[draw]
    total_s = time.perf_counter() - start
    n = len(draws)
    return {
        "samples": n,
        "seconds": total_s,
        "triplets_per_s": n / total_s,
        "ms_per_triplet": 1e3 * total_s / n,
        "decode_ms_per_triplet": 1e3 * decode_s / n,
        "augment_ms_per_triplet": 1e3 * (total_s - decode_s) / n,
    }


def time_loader(datamodule: Any, workers: int, samples: int) -> dict[str, Any]:
    """Triplets/s of the real training DataLoader with ``workers`` persistent workers, over whole epochs of at
    least ``samples`` triplets after one untimed epoch that starts the workers; the refill at each epoch start
    counts, as in training. An epoch of fewer batches than workers leaves workers idle (use more ids)."""
    datamodule.config = replace(datamodule.config, num_workers=workers)  # what its loaders read
    loader = datamodule.train_dataloader()
    per_epoch = len(loader) * loader.batch_size
    epochs = max(1, math.ceil(samples / per_epoch))
    start = 0.0
    for epoch in range(epochs + 1):
        if epoch == 1:
            start = time.perf_counter()
        loader.sampler.set_epoch(epoch)
        for _ in loader:
            pass
    seconds = time.perf_counter() - start
    del loader  # shuts the persistent workers down
    rate = epochs * per_epoch / seconds
    return {
        "workers": workers,
        "epochs": epochs,
        "batches_per_epoch": per_epoch // datamodule.config.batch_size,
        "triplets_per_s": rate,
        "per_worker": rate / workers,
    }


def keep_up(per_worker: float, triplets: int, step_s: float, cores: int) -> dict[str, Any]:
    """Whether ``cores - 1`` workers (one core runs the training loop) at ``per_worker`` feed the step."""
    needed = triplets / step_s
    available = max(cores - 1, 1)
    return {
        "step_s": step_s,
        "required_triplets_per_s": needed,
        "workers_needed": math.ceil(needed / per_worker),
        "workers_available": available,
        "projected_triplets_per_s": available * per_worker,
        "keeps_up": available * per_worker >= needed,
    }


def bench_pipeline(cfg: DictConfig, samples: int, workers: Sequence[int]) -> dict[str, Any]:
    """Decode + augmentation of ``samples`` real training draws in-process, then DataLoaders of ``workers``."""
    # generates the synthetic copy under data.root when absent
    datamodule = build_datamodule(DataConfig.parse(cfg.data))
    datamodule.setup("fit")
    draws = train_draws(datamodule, samples)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what a DataLoader worker runs with
    try:
        in_process = time_in_process(datamodule.train_set, draws)
    finally:
        torch.set_num_threads(threads)
    return {
        "data_root": datamodule.config.root,
        "synth_preset": cfg.data.synth.preset,
        "train_triplets": len(datamodule.train_set),
        "image_size": list(datamodule.image_size),
        "in_process_one_thread": in_process,
        "dataloaders": [time_loader(datamodule, w, samples) for w in workers],
    }


def keep_up_checks(
    cfg: DictConfig,
    model: dict[str, Any] | None,
    pipeline: dict[str, Any],
    cores: int,
    peak_tflops: float | None = None,
) -> dict[str, Any]:
    """Can ``cores`` cores feed the GPU? Against the measured CUDA step, and the step at the 40% MFU target
    of ``--peak-tflops`` (800 for a GPU trainer): counted FLOPs when the model ran here, else analytic.

    The rate of one worker is the 1-worker DataLoader's when it was timed (it includes collation and the
    hand-over to the main process), else the in-process one.
    """
    one = [d["triplets_per_s"] for d in pipeline["dataloaders"] if d["workers"] == 1]
    per_worker = one[0] if one else pipeline["in_process_one_thread"]["triplets_per_s"]
    triplets = int(cfg.data.batch_size)
    checks: dict[str, Any] = {}
    if model is not None and model["device"].startswith("cuda"):
        checks["measured step"] = keep_up(per_worker, triplets, model["step_s_mean"], cores)
    gpu_trainer = str(cfg.trainer.accelerator) in ("gpu", "cuda")
    peak = peak_tflops or (GPU_PEAK_TFLOPS if gpu_trainer else None)
    if peak:
        if model is not None:
            flops = model["flops"]["counted_per_step"]
        else:
            size = (int(cfg.data.image_size[0]), int(cfg.data.image_size[1]))
            flops = analytic_train_flops(build_module(cfg, HEAD_DATA).net, triplets, size).train
        target_s = flops / (TARGET_MFU * peak * 1e12)
        checks[f"{TARGET_MFU:.0%} MFU of {peak:.0f} TFLOP/s"] = keep_up(per_worker, triplets, target_s, cores)
    source = "DataLoader, 1 worker" if one else "in-process, 1 thread"
    return {"per_worker_triplets_per_s": per_worker, "per_worker_from": source, "checks": checks}


def print_pipeline(r: dict[str, Any]) -> None:
    one = r["in_process_one_thread"]
    print(
        f"data: {r['train_triplets']} synthetic training triplets ({r['synth_preset']} preset) -> "
        f"{r['image_size'][0]}x{r['image_size'][1]}"
    )
    print(
        f"  one worker (in-process, 1 thread): {one['triplets_per_s']:.1f} triplets/s = "
        f"{one['ms_per_triplet']:.2f} ms/triplet (decode {one['decode_ms_per_triplet']:.2f} + augmentation "
        f"{one['augment_ms_per_triplet']:.2f}) over {one['samples']} triplets"
    )
    for d in r["dataloaders"]:
        print(
            f"  DataLoader, {d['workers']} worker(s): {d['triplets_per_s']:.1f} triplets/s "
            f"({d['per_worker']:.1f} per worker; {d['epochs']} epoch(s) of {d['batches_per_epoch']} batches)"
        )
    keep = r["keep_up"]
    if keep["checks"]:
        print(
            f"  keep-up checks, {keep['per_worker_triplets_per_s']:.1f} triplets/s per worker "
            f"({keep['per_worker_from']}):"
        )
    for name, k in keep["checks"].items():
        verdict = "keeps up" if k["keeps_up"] else "FALLS SHORT"
        print(
            f"    vs {name} ({k['step_s'] * 1e3:.1f} ms/step): needs {k['required_triplets_per_s']:.0f} "
            f"triplets/s = {k['workers_needed']} workers at this rate; {k['workers_available']} available on "
            f"{k['workers_available'] + 1} cores give {k['projected_triplets_per_s']:.0f} -> {verdict}"
        )
