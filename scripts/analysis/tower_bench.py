"""Several towers side by side (``scripts/bench_train.py --backbone ...``): the same training benchmark for
each, interleaved in rounds so that a shared machine's changing load falls on every tower alike, or one
step's FLOPs counted without a trainer (``--flops-only``: full-size towers on a CPU).

A tower is given as ``NAME [override ...]``: the ``model/backbone`` config and the overrides it needs, e.g.
``"dinov2_vitb14 model.backbone.pad_to_patch=true"``.
"""

from __future__ import annotations

import shlex
import statistics
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig

from analysis.flops import analytic_train_flops, count_flops
from analysis.train_bench import (
    HEAD_DATA,
    ModelBench,
    backbone_summary,
    bench_model,
    flops_report,
    synthetic_batch,
)
from mdreid.factory import build_module
from mdreid.process.errors import MDReIDError


def parse_backbone(text: str) -> tuple[str, list[str]]:
    """``"NAME [override ...]"`` -> ``(the spec as one line, ["model/backbone=NAME", *overrides])``."""
    words = shlex.split(text)
    if not words or "=" in words[0]:
        raise MDReIDError(
            f"--backbone {text!r}: start with a model/backbone config name, then its overrides, e.g. "
            "--backbone 'dinov2_vitb14 model.backbone.pad_to_patch=true'"
        )
    return shlex.join(words), [f"model/backbone={words[0]}", *words[1:]]


def count_model(cfg: DictConfig) -> dict[str, Any]:
    """FLOPs of one training step (forward, MDReID objective, backward: what the timed benchmark counts),
    on the CPU with no trainer or timing, for the configured batch and image size."""
    triplets, k = int(cfg.data.batch_size), int(cfg.data.num_instances)
    image_size = (int(cfg.data.image_size[0]), int(cfg.data.image_size[1]))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module = build_module(cfg, HEAD_DATA)
    analytic = analytic_train_flops(module.net, triplets, image_size)
    batch = synthetic_batch(triplets, k, image_size, torch.device("cpu"))
    counted = count_flops(lambda: module.objective(module(batch), batch["label"])["loss"].backward())
    return {
        "backbone": backbone_summary(module, analytic.tower),
        "image_size": list(image_size),
        "triplets_per_step": triplets,
        "images_per_step": 3 * triplets,
        "flops": flops_report(counted, analytic),
    }


def compare_towers(
    cfgs: dict[str, DictConfig], device: torch.device, settings: ModelBench, rounds: int
) -> dict[str, Any]:
    """``bench_model`` for every tower once per round, in order; per tower the rounds' step rates (best,
    median) beside the last round's full report."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in cfgs}
    for _ in range(rounds):
        for name, cfg in cfgs.items():
            runs[name].append(bench_model(cfg, device, settings))
    table = {}
    for name, results in runs.items():
        rates = [r["images_per_s"] for r in results]
        table[name] = {
            **results[-1],
            "rounds": rounds,
            "images_per_s_rounds": rates,
            "images_per_s_best": max(rates),
            "images_per_s_median": statistics.median(rates),
        }
    return table


def print_towers(table: dict[str, dict[str, Any]]) -> None:
    """One line per tower: shape, counted FLOPs per image and step, and the measured rate when timed."""
    for name, r in table.items():
        bb, fl = r["backbone"], r["flops"]
        line = (
            f"{name}: {bb['tower']} {bb['layers']}x{bb['width']}, {bb['patches']} patches, "
            f"{bb['tokens_per_image']} tokens, {bb['parameters'] / 1e6:.1f}M params at "
            f"{r['image_size'][0]}x{r['image_size'][1]}; counted {fl['counted_per_step'] / r['images_per_step'] / 1e9:.2f} "
            f"GFLOP per training image ({fl['counted_per_step'] / 1e12:.4f} T per {r['triplets_per_step']}-triplet "
            f"step, counted/analytic {fl['counted_over_analytic']:.3f})"
        )
        if "images_per_s_best" in r:
            line += (
                f"; {r['images_per_s_best']:.1f} / {r['images_per_s_median']:.1f} images/s best / median of "
                f"{r['rounds']} rounds"
            )
        print(line)
