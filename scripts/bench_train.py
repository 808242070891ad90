"""Benchmark MDReID training: step throughput, peak memory and MFU of the model, and the data pipeline's rate.

Presets (trailing Hydra overrides, e.g. ``trainer.precision=16-mixed``, change any key):

- ``tiny-cpu``: ``experiment=synthetic`` as is (``model/backbone=tiny``, 128x64, 32 triplets per step, fp32
  on CPU), i.e. what ``make demo`` trains.
- ``vitb16-gpu``: CLIP ViT-B/16 with random init (``weights: null``), 256x128, 64 triplets (192 images) per
  step, ``bf16-mixed`` on one CUDA GPU.

Model part: the real ``ReIDModule`` (``mdreid.train.build_module`` on the composed config) trained by the real
Lightning Trainer (``mdreid.instantiate.instantiate_trainer``, so precision and torch threads are set as in a
run): forward, MDReID objective, backward and the Adam step. Its input is one PK-structured batch of random
images already on the device, reused every step, so the data pipeline is measured separately and the
host-to-device copy is excluded. Step 0 is FLOP-counted (``mdreid.flops``) and the warmup steps are dropped;
the timed window starts and ends with a device synchronisation. ``--profile DIR`` profiles a few more steps
(op table, Chrome trace, host syncs per step, GPU busy share).

Data part: decode + augmentation of the real training ``Dataset`` (``TrainTripletDataset.__getitem__``, the
code a DataLoader worker runs) on a synthetic copy (``data.synth.preset``), timed in this process with one
torch thread, as one worker has; ``--workers 1,4`` also times real DataLoaders with that many workers. It then
says whether ``--cores`` cores (the GPU machine's 16) keep up with the measured step rate, and for a peak
given by ``--peak-tflops`` (800 on CUDA) with the step rate at the training-speed target of 40% MFU.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import resource
import statistics
import tempfile
import time
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from mdreid.atomic_io import atomic_write_json
from mdreid.config import config_dir
from mdreid.data.triplet_dataset import read_modalities
from mdreid.errors import MDReIDError, cli_errors
from mdreid.flops import analytic_train_flops, flop_counter
from mdreid.instantiate import instantiate_trainer
from mdreid.modalities import MODALITIES
from mdreid.module import ReIDModule
from mdreid.train import build_datamodule, build_module

PRESETS: dict[str, list[str]] = {
    "tiny-cpu": ["experiment=synthetic"],
    "vitb16-gpu": [
        "experiment=synthetic",
        "model/backbone=vit_b16",
        "model.backbone.weights=null",
        "trainer=gpu",
        "trainer.precision=bf16-mixed",
        "data.image_size=[256,128]",
        "data.batch_size=64",
        "data.num_instances=8",
    ],
}
DEFAULT_STEPS = {"tiny-cpu": (3, 10), "vitb16-gpu": (10, 50)}  # (warmup, timed)
GPU_PEAK_TFLOPS = 800.0  # dense bf16 TFLOP/s of an H100-class GPU: the peak the MFU target refers to
TARGET_MFU = 0.40  # training-speed target: 40% of that peak
# the heads are sized for RGBNT201 (171 training ids, 4 cameras); their FLOPs are negligible either way
HEAD_DATA = SimpleNamespace(num_classes=171, num_cameras=4, junk_rule="camera")
FLOPS_NOTE = (
    "torch FlopCounterMode over one whole training step (forward + objective + backward): matmul, bmm, "
    "addmm, convolution and attention kernels (attention backward with the recomputed scores, as torch "
    "counts it), 2 FLOPs per multiply-add; elementwise ops, norms, losses' reductions and the Adam update "
    "are not counted"
)
ANALYTIC_NOTE = "6 x matmul weights x tokens (backward = 2x forward) + attention products 4*L*N*T^2*width x 3"


def compose_cfg(preset: str, overrides: list[str], output_dir: str) -> DictConfig:
    """The training config of ``python -m mdreid.train`` for the preset plus ``overrides``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(
            "train.yaml", overrides=[*PRESETS[preset], f"paths.output_dir={output_dir}", *overrides]
        )


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_rss_bytes() -> int:
    """The process's peak resident set size so far (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_memory(device: torch.device) -> dict[str, int]:
    """CUDA: peak allocated and reserved bytes since the last reset; CPU: the process's peak RSS so far."""
    if device.type == "cuda":
        return {
            "bytes": torch.cuda.max_memory_allocated(device),
            "reserved_bytes": torch.cuda.max_memory_reserved(device),
        }
    return {"bytes": peak_rss_bytes()}


# ------------------------------------------------------------------------------------------------ model part
class RepeatedBatch:
    """``steps`` copies of one batch, for ``trainer.fit`` (Lightning accepts any sized iterable)."""

    def __init__(self, batch: dict[str, torch.Tensor], steps: int) -> None:
        self.batch, self.steps = batch, steps

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return (self.batch for _ in range(self.steps))


def synthetic_batch(
    triplets: int, num_instances: int, image_size: tuple[int, int], device: torch.device
) -> dict[str, torch.Tensor]:
    """A collated training batch: random R/N/T images, all present, PK labels (P ids x K instances)."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randperm(HEAD_DATA.num_classes, generator=g)[: triplets // num_instances]
    batch = {m: torch.randn(triplets, 3, *image_size, generator=g) for m in MODALITIES}
    batch["present"] = torch.ones(triplets, len(MODALITIES), dtype=torch.bool)
    batch["label"] = ids.repeat_interleave(num_instances)
    batch["camid"] = torch.randint(0, HEAD_DATA.num_cameras, (triplets,), generator=g)
    return {k: v.to(device) for k, v in batch.items()}


class StepProbe(Callback):
    """Counts the FLOPs of step 0, times steps ``warmup..timed-1``, then profiles ``profile_steps`` more.

    The device is synchronised only at the ends of steps ``warmup-1`` and ``timed-1`` (the timed window), so
    consecutive steps overlap as in training; per-step times are host timestamps (exact on CPU). The CUDA
    peak-memory counter is reset at the start of the window and read at its end.
    """

    def __init__(self, warmup: int, timed: int, device: torch.device, profile_steps: int = 0) -> None:
        self.warmup, self.timed, self.device, self.profile_steps = warmup, timed, device, profile_steps
        self.counter = flop_counter()
        self.flops = 0
        self.ends: list[float] = []
        self.peak_memory: dict[str, int] = {}
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        self.profiler = profile(activities=activities) if profile_steps else None

    def on_train_batch_start(
        self, trainer: L.Trainer, module: L.LightningModule, batch: Any, idx: int
    ) -> None:
        if idx == 0:
            self.counter.__enter__()

    def on_train_batch_end(
        self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        if idx == 0:
            self.counter.__exit__(None, None, None)
            self.flops = int(self.counter.get_total_flops())
        if idx in (self.warmup - 1, self.timed - 1, self.timed + self.profile_steps - 1):
            sync(self.device)
        self.ends.append(time.perf_counter())
        if idx == self.warmup - 1 and self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        if idx == self.timed - 1:
            self.peak_memory = peak_memory(self.device)
            if self.profiler is not None:
                self.profiler.start()
        if self.profiler is not None and idx == self.timed + self.profile_steps - 1:
            self.profiler.stop()

    def on_exception(self, trainer: L.Trainer, module: L.LightningModule, exception: BaseException) -> None:
        if not self.ends:  # failed inside step 0: leave no dispatch mode behind
            self.counter.__exit__(None, None, None)

    def window_seconds(self) -> float:
        return self.ends[self.timed - 1] - self.ends[self.warmup - 1]

    def step_times(self) -> list[float]:
        ends = self.ends[self.warmup - 1 : self.timed]
        return [b - a for a, b in zip(ends, ends[1:], strict=False)]

    def profiled_seconds(self) -> float:
        return self.ends[-1] - self.ends[self.timed - 1]


def busy_seconds(events: Any, device_type: DeviceType) -> float:
    """Length of the union of the time ranges of ``device_type`` events (kernels, copies), in seconds."""
    spans = sorted((e.time_range.start, e.time_range.end) for e in events if e.device_type == device_type)
    busy, end = 0.0, -math.inf
    for start, stop in spans:
        if stop > end:
            busy += stop - max(start, end)
            end = stop
    return busy / 1e6


def summarize_profile(probe: StepProbe, out_dir: Path) -> dict[str, Any]:
    """Writes the op table and a Chrome trace; host syncs per step and, on CUDA, how busy the GPU was."""
    prof, steps = probe.profiler, probe.profile_steps
    averages = prof.key_averages()
    cuda = probe.device.type == "cuda"
    out_dir.mkdir(parents=True, exist_ok=True)
    table = averages.table(sort_by="self_device_time_total" if cuda else "self_cpu_time_total", row_limit=30)
    (out_dir / "ops.txt").write_text(table + "\n")
    prof.export_chrome_trace(str(out_dir / "trace.json"))
    calls = {e.key: e.count for e in averages}
    result = {
        "steps": steps,
        "dir": str(out_dir),
        # bool()/item() reads and boolean-mask indexing wait for the GPU when their input is on it (Adam's
        # per-parameter step counters are CPU scalars: reads, but no wait); cuda_syncs counts the waits
        "scalar_reads_per_step": calls.get("aten::_local_scalar_dense", 0) / steps,
        "nonzero_per_step": calls.get("aten::nonzero", 0) / steps,
        "cuda_syncs_per_step": sum(n for k, n in calls.items() if k.startswith("cuda") and "Synchronize" in k)
        / steps,
        "step_s": probe.profiled_seconds() / steps,
    }
    if cuda:
        result["gpu_busy_share"] = busy_seconds(prof.events(), DeviceType.CUDA) / probe.profiled_seconds()
    return result


def gemm_tflops(device: torch.device, dtype: torch.dtype) -> float:
    """Achieved TFLOP/s of a large square matmul (best of a few): the "peak" this machine really reaches."""
    n, repeats = (8192, 10) if device.type == "cuda" else (2048, 3)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm up (kernel selection, thread pool)
    best = math.inf
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e12


def compute_dtype(precision: str) -> torch.dtype:
    if precision.startswith("bf16"):
        return torch.bfloat16
    if precision.startswith("16"):
        return torch.float16
    return torch.float32


def backbone_summary(module: ReIDModule) -> dict[str, Any]:
    tower = module.net.mdl.encoder
    return {
        "width": int(tower.transformer.width),
        "layers": len(tower.transformer.resblocks),
        "patch_size": int(tower.conv1.kernel_size[0]),
        "tokens_per_image": module.net.mdl.num_tokens + int(tower.grid_size[0] * tower.grid_size[1]),
        "parameters": sum(p.numel() for p in module.parameters()),
    }


def bench_model(cfg: DictConfig, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Time ``args.steps`` real training steps after ``args.warmup``; peak memory, counted FLOPs, MFU."""
    triplets, k = int(cfg.data.batch_size), int(cfg.data.num_instances)
    image_size = (int(cfg.data.image_size[0]), int(cfg.data.image_size[1]))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    rss_before = peak_rss_bytes()
    module = build_module(cfg, HEAD_DATA)
    timed = args.warmup + args.steps
    probe = StepProbe(args.warmup, timed, device, args.profile_steps if args.profile else 0)
    trainer = instantiate_trainer(cfg, [probe], [])
    batch = synthetic_batch(triplets, k, image_size, device)
    trainer.fit(module, train_dataloaders=RepeatedBatch(batch, timed + probe.profile_steps))
    times = probe.step_times()
    step_s = probe.window_seconds() / len(times)
    memory: dict[str, Any] = dict(probe.peak_memory)
    if device.type == "cuda":
        memory["measures"] = (
            "torch.cuda.max_memory_allocated over the timed steps (reserved: the caching pool)"
        )
    else:
        memory["bytes"] -= rss_before
        memory["measures"] = (
            "rise of the process's peak RSS (ru_maxrss) from before the model was built to the end of the "
            "timed steps: weights, Adam state, gradients, activations, allocator caches"
        )
    precision = str(trainer.precision)
    dtype = compute_dtype(precision)
    gemm = gemm_tflops(device, dtype)
    analytic = analytic_train_flops(module.net, triplets)
    achieved = probe.flops / step_s / 1e12
    peak = args.peak_tflops if args.peak_tflops else (GPU_PEAK_TFLOPS if device.type == "cuda" else None)
    return {
        "device": str(device),
        "precision": precision,
        "torch_threads": torch.get_num_threads(),
        "backbone": backbone_summary(module),
        "image_size": list(image_size),
        "triplets_per_step": triplets,
        "images_per_step": 3 * triplets,
        "warmup_steps": args.warmup,
        "timed_steps": len(times),
        "step_s_mean": step_s,
        "step_s_median": statistics.median(times),
        "images_per_s": 3 * triplets / step_s,
        "triplets_per_s": triplets / step_s,
        "peak_memory": memory,
        "flops": {
            "counted_per_step": probe.flops,
            "analytic_per_step": analytic.train,
            "counted_over_analytic": probe.flops / analytic.train,
            "attention_share_of_analytic": analytic.attention_forward / analytic.forward,
            "counted_by": FLOPS_NOTE,
            "analytic_rule": ANALYTIC_NOTE,
        },
        "achieved_tflops": achieved,
        "gemm": {"dtype": str(dtype).removeprefix("torch."), "measured_tflops": gemm},
        "fraction_of_measured_gemm": achieved / gemm,
        "peak_tflops": peak,
        "mfu": achieved / peak if peak else None,
        "profile": summarize_profile(probe, args.profile) if args.profile else None,
    }


def print_model(r: dict[str, Any]) -> None:
    bb, fl, mem = r["backbone"], r["flops"], r["peak_memory"]
    print(
        f"model: {bb['layers']} layers x width {bb['width']}, patch {bb['patch_size']}, "
        f"{bb['tokens_per_image']} tokens/image, {bb['parameters'] / 1e6:.1f}M params; {r['image_size'][0]}x"
        f"{r['image_size'][1]}, {r['triplets_per_step']} triplets ({r['images_per_step']} images)/step, "
        f"{r['precision']} on {r['device']} ({r['torch_threads']} torch threads)"
    )
    print(
        f"  step {r['step_s_mean'] * 1e3:.1f} ms mean, {r['step_s_median'] * 1e3:.1f} median over "
        f"{r['timed_steps']} steps (after {r['warmup_steps']} warmup) -> {r['images_per_s']:.1f} images/s "
        f"({r['triplets_per_s']:.1f} triplets/s)"
    )
    print(f"  peak memory {mem['bytes'] / 2**30:.2f} GiB ({mem['measures']})")
    print(
        f"  FLOPs/step: counted {fl['counted_per_step'] / 1e12:.3f} T, analytic "
        f"{fl['analytic_per_step'] / 1e12:.3f} T (counted/analytic {fl['counted_over_analytic']:.3f}; "
        f"attention {fl['attention_share_of_analytic']:.1%} of the analytic forward)"
    )
    gemm = r["gemm"]
    line = (
        f"  achieved {r['achieved_tflops']:.3f} TFLOP/s = {r['fraction_of_measured_gemm']:.1%} of the "
        f"measured {gemm['dtype']} GEMM rate ({gemm['measured_tflops']:.3f} TFLOP/s)"
    )
    if r["mfu"] is not None:
        line += f"; MFU {r['mfu']:.1%} of {r['peak_tflops']:.0f} TFLOP/s"
    print(line)
    prof = r["profile"]
    if prof:
        busy = f", GPU busy {prof['gpu_busy_share']:.1%} of the time" if "gpu_busy_share" in prof else ""
        print(
            f"  profile of {prof['steps']} more steps ({prof['step_s'] * 1e3:.1f} ms/step{busy}): "
            f"{prof['scalar_reads_per_step']:.0f} scalar reads, {prof['nonzero_per_step']:.0f} nonzero, "
            f"{prof['cuda_syncs_per_step']:.0f} CUDA syncs per step; op table and Chrome trace in "
            f"{prof['dir']}"
        )


# ------------------------------------------------------------------------------------------------- data part
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
    datamodule.num_workers = workers
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
        "batches_per_epoch": per_epoch // datamodule.batch_size,
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


def bench_pipeline(cfg: DictConfig, args: argparse.Namespace) -> dict[str, Any]:
    datamodule = build_datamodule(cfg)  # generates the synthetic copy under data.root when absent
    datamodule.setup("fit")
    draws = train_draws(datamodule, args.pipeline_samples)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what a DataLoader worker runs with
    try:
        in_process = time_in_process(datamodule.train_set, draws)
    finally:
        torch.set_num_threads(threads)
    return {
        "data_root": str(datamodule.root),
        "synth_preset": cfg.data.synth.preset,
        "train_triplets": len(datamodule.train_set),
        "image_size": list(datamodule.image_size),
        "in_process_one_thread": in_process,
        "dataloaders": [time_loader(datamodule, w, args.pipeline_samples) for w in args.workers],
    }


def keep_up_checks(
    cfg: DictConfig, args: argparse.Namespace, model: dict[str, Any] | None, pipeline: dict[str, Any]
) -> dict[str, Any]:
    """Can ``--cores`` cores feed the GPU? Against the measured CUDA step, and the step at the 40% MFU target
    of ``--peak-tflops`` (800 for a GPU trainer): counted FLOPs when the model ran here, else analytic.

    The rate of one worker is the 1-worker DataLoader's when it was timed (it includes collation and the
    hand-over to the main process), else the in-process one.
    """
    one = [d["triplets_per_s"] for d in pipeline["dataloaders"] if d["workers"] == 1]
    per_worker = one[0] if one else pipeline["in_process_one_thread"]["triplets_per_s"]
    triplets = int(cfg.data.batch_size)
    checks: dict[str, Any] = {}
    if model is not None and model["device"].startswith("cuda"):
        checks["measured step"] = keep_up(per_worker, triplets, model["step_s_mean"], args.cores)
    gpu_trainer = str(cfg.trainer.accelerator) in ("gpu", "cuda")
    peak = args.peak_tflops or (GPU_PEAK_TFLOPS if gpu_trainer else None)
    if peak:
        if model is not None:
            flops = model["flops"]["counted_per_step"]
        else:
            flops = analytic_train_flops(build_module(cfg, HEAD_DATA).net, triplets).train
        target_s = flops / (TARGET_MFU * peak * 1e12)
        checks[f"{TARGET_MFU:.0%} MFU of {peak:.0f} TFLOP/s"] = keep_up(
            per_worker, triplets, target_s, args.cores
        )
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


# ------------------------------------------------------------------------------------------------------ main
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
        "--threads", type=int, help="torch CPU threads (default: the config's torch_threads=auto)"
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
    if args.skip_model and args.skip_pipeline:
        raise MDReIDError("--skip-model and --skip-pipeline together leave nothing to measure: drop one")
    return args


def model_device(cfg: DictConfig, preset: str) -> torch.device:
    """CUDA for a GPU trainer (an error when there is none), else CPU."""
    if str(cfg.trainer.accelerator) not in ("gpu", "cuda"):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise MDReIDError(
            f"--preset {preset} trains on a CUDA GPU and torch sees none; run it on a GPU machine, use "
            "--preset tiny-cpu, or add --skip-model to time only the data pipeline"
        )
    return torch.device("cuda")


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
            *([f"torch_threads={args.threads}"] if args.threads else []),
            *args.overrides,
        ]
        cfg = compose_cfg(args.preset, overrides, str(Path(tmp) / "run"))
        triplets, k = int(cfg.data.batch_size), int(cfg.data.num_instances)
        if triplets % k:
            raise MDReIDError(f"--batch {triplets} must be a multiple of data.num_instances={k} (PK batches)")
        report: dict[str, Any] = {"preset": args.preset, "overrides": overrides, "machine": machine()}
        try:
            if not args.skip_model:
                report["model"] = bench_model(cfg, args, model_device(cfg, args.preset))
                print_model(report["model"])
            if not args.skip_pipeline:
                report["pipeline"] = pipeline = bench_pipeline(cfg, args)
                pipeline["keep_up"] = keep_up_checks(cfg, args, report.get("model"), pipeline)
                print_pipeline(pipeline)
        finally:
            torch.set_num_threads(threads)
    if args.json:
        atomic_write_json(args.json, report)
        print(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    main()
