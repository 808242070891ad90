"""The ablation study (scripts/ablation.py over analysis.ablation_plan, ablation_study and
ablation_report): the aggregated numbers, the resume plan,
and one real end-to-end study of two tiny variants."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from analysis import ablation_plan as plan
from analysis import ablation_study as study
from analysis.ablation_report import (
    GEOMETRY_FILE,
    KEYS,
    SUMMARY,
    WALL_TIME_FILE,
    bar_chart,
    load_run,
    load_variant,
    to_json,
    to_markdown,
    write_report,
)
from conftest import TINY_OVERRIDES
from mdreid.metrics.groups import PAPER_PAIRS
from mdreid.modalities import all_pairs
from mdreid.process.errors import MDReIDError

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ablation.py"

# mAP of the fabricated runs at seed 0; R1 = mAP - 5; seed k adds 3k to every number, so over seeds 0, 1, 2
# every mean is +3 and every sample std (ddof = 1) is exactly 3 (ddof = 0 would give 2.449)
MATCHED_MAP = 60.0
MISSING_MAP = {"NT": 40.0, "RT": 50.0, "RN": 45.0, "T": 30.0, "N": 20.0, "R": 35.0}  # average 220 / 6
PAPER4_MAP = {("RT", "NT"): 30.0, ("RT", "N"): 20.0, ("R", "N"): 14.0, ("R", "NT"): 16.0}  # average 20
OTHER_MAP = 10.0  # the other 38 mismatched pairs: all 42 average (80 + 38 * 10) / 42 = 460 / 42


def fabricated_rows(offset: float, pairs=None) -> list[dict]:
    rows = []
    for q, g in pairs or all_pairs():
        if q == g:
            m_ap = MATCHED_MAP if q == "RNT" else MISSING_MAP[q]
        else:
            m_ap = PAPER4_MAP.get((q, g), OTHER_MAP)
        rows.append({"query": q, "gallery": g, "mAP": m_ap + offset, "R1": m_ap + offset - 5, "R5": 0.0})
    return rows


def write_run(run_dir: Path, seed: int, offset: float = 0.0, wall_s: float | None = None, pairs=None) -> Path:
    run_dir.mkdir(parents=True)
    payload = {"seed": seed, "rows": fabricated_rows(offset + 3 * seed, pairs), "groups": {}}
    (run_dir / "metrics.json").write_text(json.dumps(payload))
    if wall_s is not None:
        (run_dir / WALL_TIME_FILE).write_text(json.dumps({"attempts": [], "total_s": wall_s}))
    return run_dir


@pytest.fixture
def two_variants(tmp_path: Path):
    """Variant a: seeds 0, 1, 2; variant b: the same numbers + 10, seed 0 only."""
    a = load_variant(
        "a", "A", [write_run(tmp_path / "a" / f"seed{s}", s, wall_s=100.0 + s) for s in (0, 1, 2)]
    )
    b = load_variant("b", "B", [write_run(tmp_path / "b" / "seed0", 0, offset=10.0)])
    return a, b


def test_means_sample_stds_and_group_averages(two_variants) -> None:
    a, b = two_variants
    expected = {
        "matched/RNT->RNT/mAP": 63.0,
        "missing/NT->NT/mAP": 43.0,
        "missing/avg/mAP": 220 / 6 + 3,
        "mismatched/RT->N/mAP": 23.0,
        "mismatched/avg4/mAP": 23.0,
        "mismatched/avg42/mAP": 460 / 42 + 3,
        "mismatched/avg42/R1": 460 / 42 + 3 - 5,
    }
    for key, value in expected.items():
        assert a.mean(key) == pytest.approx(value)
        assert a.std(key) == pytest.approx(3.0)
        assert b.mean(key) == pytest.approx(value - 3 + 10)
        assert b.std(key) is None
    assert [r.seed for r in a.runs] == [0, 1, 2]
    assert a.runs[2].values["matched/RNT->RNT/R1"] == 61.0 and a.runs[1].wall_s == 101.0


def test_markdown_json_and_chart_carry_the_numbers(two_variants, tmp_path: Path) -> None:
    a, b = two_variants
    text = to_markdown([a, b])
    assert "| mAP (%) | A | B |" in text and "| R1 (%) | A | B |" in text
    assert "| **RNT→RNT** | 63.0 ± 3.0 | 70.0 |" in text
    assert "| **missing-modality average (6)** | 39.7 ± 3.0 | 46.7 |" in text
    assert "| RT→NT | 33.0 ± 3.0 | 40.0 |" in text
    assert "| **mismatched average, paper's 4** | 18.0 ± 3.0 | 25.0 |" in text  # R1 table
    assert "| **mismatched average, all 42** | 14.0 ± 3.0 | 21.0 |" in text
    assert "ddof = 1" in text and "seeds 0, 1, 2" in text and "A 101 s" in text

    payload = to_json([a, b])
    assert [v["name"] for v in payload["variants"]] == ["a", "b"]
    assert [r["values"]["missing/avg/mAP"] for r in payload["variants"][0]["runs"]] == pytest.approx(
        [220 / 6, 220 / 6 + 3, 220 / 6 + 6]
    )
    assert payload["variants"][1]["std"]["matched/RNT->RNT/mAP"] is None
    assert set(payload["variants"][0]["mean"]) == set(KEYS)

    fig = bar_chart([a, b])
    heights = [p.get_height() for p in fig.axes[0].patches]  # mAP panel: variant a's bars, then b's
    means_a = [63.0, 220 / 6 + 3, 23.0, 460 / 42 + 3]
    assert heights == pytest.approx(means_a + [m - 3 + 10 for m in means_a])
    assert len(SUMMARY) == 4

    written = write_report([a, b], tmp_path / "r.md", tmp_path / "img" / "r.png", tmp_path / "r.json")
    assert written["markdown"].read_text() == text
    assert json.loads(written["json"].read_text()) == json.loads(json.dumps(payload))
    assert Image.open(written["plot"]).format == "PNG"
    assert not list(tmp_path.rglob("*.tmp"))


def test_unfinished_or_partial_runs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(MDReIDError, match="metrics.json not found"):
        load_run(tmp_path / "missing")
    partial = write_run(tmp_path / "paper", 0, pairs=PAPER_PAIRS)
    with pytest.raises(MDReIDError, match="eval.pairs=all"):
        load_run(partial)


def test_plan_skips_finished_runs_and_resumes_killed_ones(tmp_path: Path, monkeypatch) -> None:
    variants = plan.select_variants(["full", "baseline"])  # table order, whatever the CLI order
    assert [v.name for v in variants] == ["baseline", "full"]
    common = plan.common_overrides("synthetic", 5, tmp_path / "data")
    runs = plan.plan_runs(variants, [0, 1], tmp_path, common, ["runtime.torch_threads=1"])
    assert [r.name for r in runs] == ["baseline/seed0", "full/seed0", "baseline/seed1", "full/seed1"]
    write_run(runs[0].run_dir, 0)  # finished
    last = runs[1].run_dir / "checkpoints" / "last.ckpt"  # killed after an epoch
    last.parent.mkdir(parents=True)
    last.write_bytes(b"")

    calls: list[list[str]] = []

    class FakePopen:
        """Exits 0 every time, but writes no metrics.json for full/seed1 (as a SIGTERMed Lightning run)."""

        def __init__(self, cmd: list[str], **kwargs) -> None:
            calls.append(cmd)
            run_dir = Path(cmd[-1].removeprefix("hydra.run.dir="))
            if run_dir != runs[3].run_dir:
                (run_dir / "metrics.json").write_text("{}")

        def wait(self) -> int:
            return 0

    monkeypatch.setattr(study.subprocess, "Popen", FakePopen)
    assert study.run_study(runs, jobs=1) == [runs[3]]
    assert [c[-1] for c in calls] == [f"hydra.run.dir={r.run_dir}" for r in runs[1:]]
    assert calls[0][:3] == [sys.executable, "-m", "mdreid.train"]
    assert f"ckpt_path={last}" in calls[0] and not any("ckpt_path" in a for c in calls[1:] for a in c)
    assert "model=baseline" in calls[1] and "seed=1" in calls[1] and "trainer.max_epochs=5" in calls[1]
    assert (
        calls[1].index("model=baseline")
        < calls[1].index("seed=1")
        < calls[1].index("runtime.torch_threads=1")
    )
    timing = json.loads((runs[1].run_dir / WALL_TIME_FILE).read_text())
    assert timing["attempts"][0]["resumed_from"] == str(last) and timing["attempts"][0]["returncode"] == 0
    assert not (runs[0].run_dir / WALL_TIME_FILE).exists()


def test_run_folders_of_another_budget_are_refused(tmp_path: Path) -> None:
    variant = plan.select_variants(["mdl"])
    run = plan.plan_runs(variant, [0], tmp_path, plan.common_overrides("synthetic", 5, tmp_path), [])[0]
    recorded = run.run_dir / ".hydra" / "overrides.yaml"
    recorded.parent.mkdir(parents=True)
    # what Hydra recorded for an earlier attempt: same overrides, plus keys that do not change the numbers
    recorded.write_text(
        "".join(f"- '{o}'\n" for o in (*run.overrides, "ckpt_path=x", "runtime.torch_threads=2"))
    )
    plan.check_recorded(run)
    recorded.write_text(recorded.read_text().replace("max_epochs=5", "max_epochs=7"))
    with pytest.raises(MDReIDError, match="recorded: trainer.max_epochs=7; planned: trainer.max_epochs=5"):
        plan.check_recorded(run)


def test_bad_input_is_one_error_line(tmp_path: Path, capsys) -> None:
    for argv, message in [
        (["--variants", "full", "nope"], "unknown variant 'nope': choose from baseline, mdl,"),
        (["--jobs", "0"], "--epochs and --jobs must be >= 1"),
        (
            ["--report-only", "--seeds", "0"],
            "baseline/seed0/metrics.json not found: that run has not finished",
        ),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            study.main(["--out", str(tmp_path), *argv])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2
        assert err.startswith("error: ") and message in err and err.count("\n") == 1


@pytest.mark.slow
def test_two_tiny_variants_end_to_end(tmp_path: Path, synthetic_data_dir: Path) -> None:
    """The real CLI twice at once (one epoch of a tiny ViT each), then the report files."""
    owned = ("experiment=", "trainer.max_epochs=")  # the study sets these itself
    extra = [o for o in TINY_OVERRIDES if not o.startswith(owned)] + ["data.synth.preset=tiny"]
    cmd = [sys.executable, str(SCRIPT), "--out", str(tmp_path), "--data-dir", str(synthetic_data_dir)]
    cmd += [
        "--variants",
        "baseline",
        "full",
        "--seeds",
        "0",
        "--epochs",
        "1",
        "--jobs",
        "2",
        "--extra",
        *extra,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    for name in ("baseline", "full"):
        run = tmp_path / name / "seed0"
        assert len(json.loads((run / "metrics.json").read_text())["rows"]) == 49
        assert json.loads((run / WALL_TIME_FILE).read_text())["total_s"] > 0
    assert Image.open(tmp_path / "ablation.png").format == "PNG"
    payload = json.loads((tmp_path / "ablation.json").read_text())
    assert [v["label"] for v in payload["variants"]] == ["baseline (no MDL)", "MDReID (MDL + ROL + KDL)"]
    assert (
        "| mAP (%) | baseline (no MDL) | MDReID (MDL + ROL + KDL) |" in (tmp_path / "ablation.md").read_text()
    )


def test_diagnostics_from_geometry_files(tmp_path: Path) -> None:
    """geometry.json (features + final losses) becomes a mean ± std row per diagnostic; runs without it
    (or a baseline without shared features) show a dash."""
    runs = []
    for seed, cosine in ((0, 0.99), (1, 0.97)):
        run = write_run(tmp_path / "full" / f"seed{seed}", seed)
        features = {"mean_cosine": cosine, "sp_sh_cosine": 0.5, "sh_cross_modal_cosine": 0.25}
        losses = {"rol": 1.0, "kdl": 5.25 - seed, "loss": 9.0}
        (run / GEOMETRY_FILE).write_text(json.dumps({"features": features, "final_losses": losses}))
        runs.append(run)
    full = load_variant("full", "F", runs)
    bare = load_variant("bare", "B", [write_run(tmp_path / "bare" / "seed0", 0)])
    assert full.diagnostic("mean_cosine") == pytest.approx((0.98, 0.0002**0.5))  # std of 0.99, 0.97
    assert full.runs[0].diagnostics["loss/kdl"] == 5.25 and "loss/loss" not in full.runs[0].diagnostics
    assert bare.diagnostic("mean_cosine") is None
    text = to_markdown([full, bare])
    assert "| mean cosine between any two test features | 0.9800 ± 0.0141 | – |" in text
    assert "| final-epoch KDL (weighted) | 4.7500 ± 0.7071 | – |" in text


def test_final_losses_read_the_last_logged_epoch(tmp_path: Path) -> None:
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "metrics.csv").write_text(
        "epoch,step,train/loss_step,train/loss_epoch,train/rol_epoch\n"
        "0,5,2.0,,\n0,9,,3.0,1.0\n1,19,,2.5,0.75\n1,19,,,\n"
    )
    assert study.final_losses(tmp_path) == {"loss": 2.5, "rol": 0.75}
    assert study.final_losses(tmp_path / "missing") == {}
