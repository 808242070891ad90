"""What the ablation study runs (``python scripts/ablation.py``, docs/method.md §9.4): seven variants x
seeds, each the train command a user would type, and the checks that keep one report to one budget."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from analysis.ablation_report import METRICS_FILE
from mdreid.config.hydra import compose_config
from mdreid.process.errors import MDReIDError

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
RUNTIME_KEYS: frozenset[str] = frozenset({"ckpt_path", "runtime.torch_threads", "data.num_workers"})


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
        "eval.plots=false",
    ]


def runtime_overrides(jobs: int) -> list[str]:
    """Concurrent runs split the cores: each gets cores // jobs torch threads and loads data in-process
    (a DataLoader worker per run would oversubscribe a small machine); one run keeps the CLI's defaults."""
    if jobs == 1:
        return []
    return [f"runtime.torch_threads={max(1, (os.cpu_count() or 1) // jobs)}", "data.num_workers=0"]


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
    for run in runs:
        try:
            yield run, compose_config("train.yaml", run.overrides)
        except HydraException as err:
            raise MDReIDError(f"{run.name}: {'; '.join(str(err).splitlines())}") from err
