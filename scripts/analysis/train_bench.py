"""The model half of the training benchmark (scripts/bench_train.py): real training steps of the real
``ReIDModule`` under the real Lightning Trainer, timed, FLOP-counted and set against the machine's GEMM rate.

The input is one PK-structured batch of random images already on the device, reused every step, so the data
pipeline is measured separately (``pipeline_bench``) and the host-to-device copy is excluded.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig

from analysis.flops import AnalyticFlops, TowerShape, analytic_train_flops
from analysis.profiling import (
    StepProbe,
    compute_dtype,
    gemm_tflops,
    peak_rss_bytes,
    summarize_profile,
)
from mdreid.config.hydra import compose_config, instantiate_trainer
from mdreid.factory import build_module
from mdreid.modalities import MODALITIES
from mdreid.module import ReIDModule
from mdreid.process.errors import MDReIDError

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


@dataclass(frozen=True)
class ModelBench:
    """How the model is timed: ``warmup`` untimed steps (step 0 FLOP-counted), ``steps`` timed ones, then
    ``profile_steps`` profiled into ``profile`` when given; ``peak_tflops`` is the MFU reference."""

    warmup: int
    steps: int
    profile: Path | None = None
    profile_steps: int = 3
    peak_tflops: float | None = None


def bench_config(preset: str, overrides: Sequence[str], output_dir: str) -> DictConfig:
    """The training config of ``python -m mdreid.train`` for the preset plus ``overrides``."""
    return compose_config("train.yaml", [*PRESETS[preset], f"paths.output_dir={output_dir}", *overrides])


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


def backbone_summary(module: ReIDModule, shape: TowerShape) -> dict[str, Any]:
    """The tower as the benchmark saw it (read through the tower protocol by ``tower_shape``)."""
    return {
        "tower": type(module.net.mdl.encoder).__name__,
        "width": shape.width,
        "layers": shape.attention_layers,
        "patches": shape.patches,
        "tokens_per_image": shape.tokens,
        "parameters": sum(p.numel() for p in module.parameters()),
    }


def flops_report(counted: int, analytic: AnalyticFlops) -> dict[str, Any]:
    """One step's counted FLOPs beside the analytic rule's."""
    return {
        "counted_per_step": counted,
        "analytic_per_step": analytic.train,
        "counted_over_analytic": counted / analytic.train,
        "attention_share_of_analytic": analytic.attention_forward / analytic.forward,
        "counted_by": FLOPS_NOTE,
        "analytic_rule": ANALYTIC_NOTE,
    }


def bench_model(cfg: DictConfig, device: torch.device, settings: ModelBench) -> dict[str, Any]:
    """Time ``settings.steps`` real training steps after ``settings.warmup``; peak memory, counted FLOPs, MFU."""
    triplets, k = int(cfg.data.batch_size), int(cfg.data.num_instances)
    image_size = (int(cfg.data.image_size[0]), int(cfg.data.image_size[1]))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    rss_before = peak_rss_bytes()
    module = build_module(cfg, HEAD_DATA)
    analytic = analytic_train_flops(module.net, triplets, image_size)  # before the model moves to the device
    timed = settings.warmup + settings.steps
    profile_steps = settings.profile_steps if settings.profile else 0
    probe = StepProbe(settings.warmup, timed, device, profile_steps)
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
    achieved = probe.flops / step_s / 1e12
    peak = (
        settings.peak_tflops if settings.peak_tflops else (GPU_PEAK_TFLOPS if device.type == "cuda" else None)
    )
    return {
        "device": str(device),
        "precision": precision,
        "torch_threads": torch.get_num_threads(),
        "backbone": backbone_summary(module, analytic.tower),
        "image_size": list(image_size),
        "triplets_per_step": triplets,
        "images_per_step": 3 * triplets,
        "warmup_steps": settings.warmup,
        "timed_steps": len(times),
        "step_s_mean": step_s,
        "step_s_median": statistics.median(times),
        "images_per_s": 3 * triplets / step_s,
        "triplets_per_s": triplets / step_s,
        "peak_memory": memory,
        "flops": flops_report(probe.flops, analytic),
        "achieved_tflops": achieved,
        "gemm": {"dtype": str(dtype).removeprefix("torch."), "measured_tflops": gemm},
        "fraction_of_measured_gemm": achieved / gemm,
        "peak_tflops": peak,
        "mfu": achieved / peak if peak else None,
        "profile": summarize_profile(probe, settings.profile) if settings.profile else None,
    }


def print_model(r: dict[str, Any]) -> None:
    bb, fl, mem = r["backbone"], r["flops"], r["peak_memory"]
    print(
        f"model: {bb['tower']}, {bb['layers']} layers x width {bb['width']}, {bb['patches']} patches, "
        f"{bb['tokens_per_image']} tokens/image in the blocks, {bb['parameters'] / 1e6:.1f}M params; {r['image_size'][0]}x"
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
