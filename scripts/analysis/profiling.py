"""Timing, memory and profiling probes of a training benchmark: the step callback, the profiler summary and
the GEMM rate this machine really reaches, so MFU and step times are measured the same way every time."""

from __future__ import annotations

import math
import resource
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from analysis.flops import flop_counter


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
    """The matmul dtype of a Lightning ``precision`` setting, for the GEMM probe."""
    if precision.startswith("bf16"):
        return torch.bfloat16
    if precision.startswith("16"):
        return torch.float16
    return torch.float32
