"""The ablation report: per-seed runs of each variant -> mean ± std tables (markdown), a grouped bar chart
(PNG) and every per-seed number (JSON).

Each run's numbers are recomputed from the 49 rows of its metrics.json with ``metrics.groups.named_groups``,
so the settings mean exactly what they mean everywhere else, and a run evaluated on fewer pairs is refused
instead of reported under a name that covers other pairs. The spread is the sample standard deviation over
seeds (ddof = 1): it estimates the seed-to-seed spread of the method, not the spread of these few runs.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from mdreid.files.atomic_io import atomic_write_json, atomic_write_text
from mdreid.files.portable_paths import portable
from mdreid.metrics.groups import GROUP_METRICS, MATCHED, MISMATCHED, MISSING, named_groups, pair_name
from mdreid.process.errors import MDReIDError
from mdreid.reporting.plots import save_figure

METRICS_FILE = "metrics.json"
WALL_TIME_FILE = "wall_time.json"  # {"attempts": [{"wall_s", "returncode", "resumed_from"}], "total_s"}
GEOMETRY_FILE = "geometry.json"  # {"features": feature_geometry(...), "final_losses": {"rol": ..., ...}}
STD_NOTE = "sample standard deviation over seeds (ddof = 1)"


@dataclass(frozen=True)
class Setting:
    """One reported setting: ``key`` is its ``named_groups`` prefix (``"missing/avg"``)."""

    key: str
    label: str
    summary: bool = False  # one of the headline numbers (bold in the tables, a bar group in the chart)
    tick: str = ""  # x tick label in the chart, where ``label`` is too long


def _pairs(group: str, pairs: Sequence[tuple[str, str]], summary: bool = False) -> list[Setting]:
    return [Setting(f"{group}/{pair_name(q, g)}", f"{q}→{g}", summary) for q, g in pairs]


SETTINGS: tuple[Setting, ...] = (
    *_pairs("matched", MATCHED, summary=True),
    *_pairs("missing", MISSING),
    Setting("missing/avg", "missing-modality average (6)", summary=True, tick="missing\navg (6)"),
    *_pairs("mismatched", MISMATCHED),
    Setting(
        "mismatched/avg4", "mismatched average, paper's 4", summary=True, tick="mismatched\navg (paper 4)"
    ),
    Setting("mismatched/avg42", "mismatched average, all 42", summary=True, tick="mismatched\navg (all 42)"),
)
SUMMARY: tuple[Setting, ...] = tuple(s for s in SETTINGS if s.summary)
# (key, label) of the per-run diagnostics: the cosine geometry of the test features (analysis.feature_geometry)
# and the last epoch's weighted training losses; ROL = 1.5 x 2/3 = 1.0 means collinear features
DIAGNOSTICS: tuple[tuple[str, str], ...] = (
    ("mean_cosine", "mean cosine between any two test features"),
    ("sp_sh_cosine", "cos(sp^m, sh^m), same sample (ROL target 0)"),
    ("sh_cross_modal_cosine", "cos(sh^i, sh^j), same sample (ROL target 1)"),
    ("loss/id", "final-epoch ID loss (weighted)"),
    ("loss/triplet", "final-epoch triplet loss (weighted)"),
    ("loss/rol", "final-epoch ROL (weighted; 1.0 = collinear)"),
    ("loss/kdl", "final-epoch KDL (weighted)"),
)
KEYS: tuple[str, ...] = tuple(f"{s.key}/{m}" for s in SETTINGS for m in GROUP_METRICS)


@dataclass(frozen=True)
class RunResult:
    """The reported numbers (percent) of one finished run, keyed ``"<setting>/<metric>"``."""

    seed: int
    run_dir: str  # as given, or relative to the study folder (load_run's root)
    values: dict[str, float]
    wall_s: float | None  # training + evaluation, summed over resumed attempts; None if not recorded
    diagnostics: dict[str, float]  # DIAGNOSTICS keys present for this run (GEOMETRY_FILE), else empty


@dataclass(frozen=True)
class VariantResult:
    """All seeds of one variant, in the order given."""

    name: str
    label: str
    runs: tuple[RunResult, ...]

    def values(self, key: str) -> list[float]:
        return [run.values[key] for run in self.runs]

    def mean(self, key: str) -> float:
        return statistics.fmean(self.values(key))

    def std(self, key: str) -> float | None:
        """Sample std (ddof = 1); None with a single run, where it is undefined."""
        values = self.values(key)
        return statistics.stdev(values) if len(values) > 1 else None

    def diagnostic(self, key: str) -> tuple[float, float | None] | None:
        """Mean and sample std of a diagnostic over the runs that have it; None if none has it."""
        values = [run.diagnostics[key] for run in self.runs if key in run.diagnostics]
        if not values:
            return None
        return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def load_run(run_dir: str | Path, root: str | Path | None = None) -> RunResult:
    """Read a finished run; one clear error if it has not finished or was evaluated on a pair subset. With
    ``root`` (the study folder) the run's folder is recorded relative to it."""
    run_dir = Path(run_dir)
    path = run_dir / METRICS_FILE
    if not path.is_file():
        raise MDReIDError(
            f"{path} not found: that run has not finished; run the study again (it resumes) "
            "or leave its variant/seed out of the report"
        )
    payload = json.loads(path.read_text())
    groups = named_groups(payload["rows"])
    absent = [key for key in KEYS if key not in groups]
    if absent:
        raise MDReIDError(
            f"{path} lacks {', '.join(absent[:2])}{', ...' if len(absent) > 2 else ''}: "
            "the run evaluated only some pairs; rerun it with eval.pairs=all"
        )
    timing = run_dir / WALL_TIME_FILE
    wall_s = json.loads(timing.read_text())["total_s"] if timing.is_file() else None
    geometry = run_dir / GEOMETRY_FILE
    diagnostics: dict[str, float] = {}
    if geometry.is_file():
        found = json.loads(geometry.read_text())
        flat = {**found["features"], **{f"loss/{k}": v for k, v in found["final_losses"].items()}}
        diagnostics = {key: float(flat[key]) for key, _ in DIAGNOSTICS if key in flat}
    recorded = portable(run_dir, root) if root is not None else str(run_dir)
    return RunResult(int(payload["seed"]), recorded, {key: groups[key] for key in KEYS}, wall_s, diagnostics)


def load_variant(
    name: str, label: str, run_dirs: Sequence[str | Path], root: str | Path | None = None
) -> VariantResult:
    return VariantResult(name, label, tuple(load_run(d, root) for d in run_dirs))


def _cell(variant: VariantResult, key: str) -> str:
    std = variant.std(key)
    return f"{variant.mean(key):.1f}" if std is None else f"{variant.mean(key):.1f} ± {std:.1f}"


def _diagnostic_cell(stat: tuple[float, float | None] | None) -> str:
    if stat is None:
        return "–"
    mean, std = stat
    return f"{mean:.4f}" if std is None else f"{mean:.4f} ± {std:.4f}"


def _seeds(variants: Sequence[VariantResult]) -> list[int]:
    return sorted({run.seed for v in variants for run in v.runs})


def to_markdown(variants: Sequence[VariantResult]) -> str:
    """One table per metric (settings as rows, variants as columns) and the wall time of the runs."""
    counts = " or ".join(map(str, sorted({len(v.runs) for v in variants})))
    seeds = ", ".join(map(str, _seeds(variants)))
    lines = [
        f"Mean ± {STD_NOTE}, in percent; seeds {seeds}; runs per variant: {counts}. "
        "Summary settings in bold.",
    ]
    for metric in GROUP_METRICS:
        lines += ["", f"| {metric} (%) | " + " | ".join(v.label for v in variants) + " |"]
        lines.append("|---|" + "---:|" * len(variants))
        for s in SETTINGS:
            label = f"**{s.label}**" if s.summary else s.label
            lines.append(f"| {label} | " + " | ".join(_cell(v, f"{s.key}/{metric}") for v in variants) + " |")
    if any(v.diagnostic(key) for v in variants for key, _ in DIAGNOSTICS):
        lines += ["", "| diagnostics | " + " | ".join(v.label for v in variants) + " |"]
        lines.append("|---|" + "---:|" * len(variants))
        for key, label in DIAGNOSTICS:
            cells = [_diagnostic_cell(v.diagnostic(key)) for v in variants]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    timed = [(v, [r.wall_s for r in v.runs if r.wall_s is not None]) for v in variants]
    per_variant = [f"{v.label} {statistics.fmean(w):.0f} s" for v, w in timed if w]
    if per_variant:
        total = sum(sum(w) for _, w in timed)
        lines += [
            "",
            f"Wall time per run (mean over seeds): {'; '.join(per_variant)}. "
            f"Sum over the timed runs: {total / 60:.1f} min (runs that ran concurrently overlap).",
        ]
    return "\n".join(lines) + "\n"


def to_json(variants: Sequence[VariantResult]) -> dict:
    """Every per-seed number, the means and the stds (null with one run), in percent."""
    return {
        "unit": "percent",
        "std": f"{STD_NOTE}; null with a single run",
        "settings": [{"key": s.key, "label": s.label, "summary": s.summary} for s in SETTINGS],
        "variants": [
            {
                "name": v.name,
                "label": v.label,
                "mean": {key: v.mean(key) for key in KEYS},
                "std": {key: v.std(key) for key in KEYS},
                "runs": [
                    {
                        "seed": r.seed,
                        "run_dir": r.run_dir,
                        "wall_s": r.wall_s,
                        "values": r.values,
                        "diagnostics": r.diagnostics,
                    }
                    for r in v.runs
                ],
            }
            for v in variants
        ],
    }


def bar_chart(variants: Sequence[VariantResult]) -> Figure:
    """One panel per metric: the summary settings on x, one bar per variant, error bars = sample std."""
    colours = colormaps["tab10"]
    width = 0.8 / len(variants)
    x = np.arange(len(SUMMARY))
    fig = Figure(figsize=(6.0 * len(GROUP_METRICS), 4.8), layout="constrained")
    for k, metric in enumerate(GROUP_METRICS):
        ax = fig.add_subplot(1, len(GROUP_METRICS), k + 1)
        for i, v in enumerate(variants):
            keys = [f"{s.key}/{metric}" for s in SUMMARY]
            stds = [v.std(key) for key in keys]
            ax.bar(
                x + (i - (len(variants) - 1) / 2) * width,
                [v.mean(key) for key in keys],
                width,
                yerr=None if None in stds else stds,
                capsize=2,
                color=colours(i % colours.N),
                label=v.label,
            )
        ax.set_xticks(x, [s.tick or s.label for s in SUMMARY], fontsize=9)
        ax.set_ylabel(f"{metric} (%)")
        ax.set_ylim(bottom=0)
        ax.grid(axis="y", alpha=0.3)
        ax.set_title(metric)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(3, len(variants)), fontsize=8)
    seeds = _seeds(variants)
    fig.suptitle(f"Ablation: mean ± sample std over {len(seeds)} seed(s) ({', '.join(map(str, seeds))})")
    return fig


def write_report(
    variants: Sequence[VariantResult], markdown: str | Path, plot: str | Path, json_path: str | Path
) -> Mapping[str, Path]:
    """The markdown tables, the bar chart and the JSON, each written atomically; returns them by kind."""
    if not variants:
        raise MDReIDError("the ablation report needs at least one variant")
    return {
        "markdown": atomic_write_text(markdown, to_markdown(variants)),
        "plot": save_figure(bar_chart(variants), plot),
        "json": atomic_write_json(json_path, to_json(variants)),
    }
