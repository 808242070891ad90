"""Scaling out through the real CLIs on CPU: Hydra multiruns, ddp_spawn sweeps, Optuna, submitit, the SLURM preset
and DDP evaluation. Every run is a subprocess, as a user would start it; runs are 1 epoch on the tiny synthetic set.
The 2x2 loss-weight sweep trains 4 jobs; its first checkpoint is reused by the DDP evaluation test."""

from __future__ import annotations

import csv
import json
import math
import os
import pickle
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from hydra.utils import instantiate
from scipy import stats

from conftest import TINY_OVERRIDES, compose_cfg
from mdreid.data.synthetic.generate import generate
from mdreid.lightning_plugins.spawn_strategy import FileMetricsLauncher, SpawnDDPStrategy
from mdreid.metrics.groups import PAPER_PAIRS

# On top of TINY_OVERRIDES: one epoch, no logger/callbacks/plots, the 11 paper pairs instead of 49.
FAST = ["logger=none", "callbacks=none", "trainer.max_epochs=1", "eval.plots=false", "eval.pairs=paper"]
ENV = {**os.environ, "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "1"}


def overrides(data_dir: Path, *extra: str, drop: tuple[str, ...] = ()) -> list[str]:
    """TINY_OVERRIDES + FAST + ``extra`` (a later value of a key replaces an earlier one), minus ``drop``."""
    merged: dict[str, str] = {}
    for item in (*TINY_OVERRIDES, *FAST, f"paths.data_dir={data_dir}", *extra):
        key, value = item.split("=", 1)
        merged[key] = value
    return [f"{key}={value}" for key, value in merged.items() if key not in drop]


def cli(entry: str, *args: str, cwd: Path, env: dict[str, str] | None = None, ok: bool = True) -> str:
    """Run ``python -m mdreid.<entry> args`` in ``cwd``; returns stdout + stderr (asserts success when ``ok``)."""
    proc = subprocess.run(
        [sys.executable, "-m", f"mdreid.{entry}", *args],
        cwd=cwd,
        env=env or ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = proc.stdout + proc.stderr
    if ok:
        assert proc.returncode == 0, output[-4000:]
    return output


def job_dirs(sweep_dir: Path) -> list[Path]:
    return sorted((p for p in sweep_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def job_config(job_dir: Path) -> dict:
    return yaml.safe_load((job_dir / ".hydra" / "config.yaml").read_text())


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``paths.data_dir`` holding the tiny synthetic RGBNT201 (data.root = <data_dir>/synthetic), made once."""
    root = tmp_path_factory.mktemp("sweep-data")
    generate("rgbnt201", root / "synthetic", ids=12, seed=0, preset="tiny")
    return root


@pytest.fixture(scope="module")
def weight_sweep(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A multirun of 2 ROL weights x 2 seeds with the default (sequential) launcher; its sweep dir."""
    work = tmp_path_factory.mktemp("weights")
    sweep = work / "sweep"
    cli(
        "train",
        "-m",
        *overrides(
            data_dir,
            "test=true",
            f"hydra.sweep.dir={sweep}",
            "model.loss.rol_weight=0.5,1.5",
            "seed=1,2",
        ),
        cwd=work,
    )
    return sweep


@pytest.mark.slow
def test_multirun_over_loss_weights_runs_every_combination(weight_sweep: Path) -> None:
    jobs = job_dirs(weight_sweep)
    assert [j.name for j in jobs] == ["0", "1", "2", "3"]
    seen = set()
    for job in jobs:
        rows = json.loads((job / "metrics.json").read_text())["rows"]
        assert {(r["query"], r["gallery"]) for r in rows} == set(PAPER_PAIRS)  # eval.pairs=paper
        # the swept values reached the model that was trained, not just the config
        (ckpt,) = (job / "checkpoints").glob("*.ckpt")
        saved = torch.load(ckpt, map_location="cpu", weights_only=False)
        loss = saved["hyper_parameters"]["loss"]
        assert loss == {**loss, **job_config(job)["model"]["loss"]}
        # the checkpoint carries the protocol: validated on held-out identities, with this job's seed
        assert saved["protocol"]["selected_on"] == "validation"
        seen.add((loss["rol_weight"], saved["protocol"]["seed"]))
    assert seen == {(0.5, 1), (0.5, 2), (1.5, 1), (1.5, 2)}


def summary_rows(sweep_dir: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((sweep_dir / "sweep_summary.csv").open()))


def check_row_against_job(row: dict[str, str], sweep_dir: Path) -> None:
    """A done job's summary row holds its overrides, the value it returned and every group of its metrics.json."""
    job = sweep_dir / row["folder"]
    assert row["status"] == "done" and row["job"] == row["folder"]
    groups = json.loads((job / "metrics.json").read_text())["groups"]
    assert groups and all(float(row[name]) == value for name, value in groups.items())  # repr round trip
    assert float(row["val/score"]) == json.loads((job / "job_status.json").read_text())["value"]
    for item in yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()):
        key, value = item.split("=", 1)
        assert row[key] == value


@pytest.mark.slow
def test_multirun_leaves_a_ranked_summary_table(weight_sweep: Path) -> None:
    rows = summary_rows(weight_sweep)
    assert sorted(r["job"] for r in rows) == ["0", "1", "2", "3"] and [r["rank"] for r in rows] == [
        "1",
        "2",
        "3",
        "4",
    ]
    for row in rows:
        check_row_against_job(row, weight_sweep)
    scores = [float(r["val/score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    table = (weight_sweep / "sweep_summary.md").read_text()
    assert "4 jobs (4 done), best first by val/score (higher is better)" in table
    assert "Selected on the validation split (held-out training identities)" in table
    assert "| model.loss.rol_weight | seed |" in table  # the swept keys; the rest listed above
    assert "Same in every job: `experiment=synthetic`" in table


@pytest.mark.slow
def test_multirun_groups_seeds_into_configurations(weight_sweep: Path) -> None:
    """Jobs that differ only in their seed are one configuration: mean ± std (n) of every column, ranked by
    the mean of val/score, checked against each job's own files; the winner against the runner-up over
    paired seeds with SciPy's t interval."""
    values: dict[str, dict[str, dict[str, float]]] = {}
    for job in job_dirs(weight_sweep):
        rol, seed = job_config(job)["model"]["loss"]["rol_weight"], job_config(job)["seed"]
        groups = json.loads((job / "metrics.json").read_text())["groups"]
        score = json.loads((job / "job_status.json").read_text())["value"]
        values.setdefault(str(rol), {})[str(seed)] = {"val/score": score, **groups}
    rows = list(csv.DictReader((weight_sweep / "sweep_configs.csv").open()))
    assert len(rows) == 2 and [r["jobs"] for r in rows] == ["2", "2"]
    means = []
    for row in rows:
        seeds = values[row["model.loss.rol_weight"]]
        for column in ("val/score", "matched/RNT->RNT/mAP", "missing/avg/R1"):
            got = [seeds[s][column] for s in ("1", "2")]
            assert float(row[f"{column} mean"]) == pytest.approx(sum(got) / 2, abs=1e-9)
            assert float(row[f"{column} std"]) == pytest.approx(abs(got[0] - got[1]) / math.sqrt(2), abs=1e-9)
            assert row[f"{column} n"] == "2"
        means.append(float(row["val/score mean"]))
    assert means == sorted(means, reverse=True)
    best, runner_up = (values[r["model.loss.rol_weight"]] for r in rows)
    diffs = [best[s]["val/score"] - runner_up[s]["val/score"] for s in ("1", "2")]
    low, high = stats.ttest_rel(
        [best[s]["val/score"] for s in ("1", "2")], [runner_up[s]["val/score"] for s in ("1", "2")]
    ).confidence_interval(0.95)
    table = (weight_sweep / "sweep_summary.md").read_text()
    assert "## Configurations (mean ± std over seeds)" in table
    assert f"- val/score: {sum(diffs) / 2:+.2f}, 95% CI [{low:+.2f}, {high:+.2f}] (n=2 paired seeds)" in table
    # the same table again from the folder, against a named reference
    other = rows[1]["model.loss.rol_weight"]
    out = cli(
        "sweep_summary", str(weight_sweep), f"--reference=model.loss.rol_weight={other}", cwd=weight_sweep
    )
    assert f"minus reference (model.loss.rol_weight={other})" in out


@pytest.mark.slow
@pytest.mark.parametrize("one_line", [True, False], ids=["error-line", "traceback"])
def test_a_failed_job_never_stops_its_sweep(one_line: bool, data_dir: Path, tmp_path: Path) -> None:
    """Job 0 stops with a config error, as one ``error:`` line (the default) or a traceback
    (HYDRA_FULL_ERROR=1). Job 1 still runs; the failed job's status file and table row hold its error, the
    table lists it after the sweep, and the sweep's exit code says a job failed."""
    sweep = tmp_path / "sweep"
    env = {k: v for k, v in ENV.items() if k != "HYDRA_FULL_ERROR"} if one_line else ENV
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mdreid.train",
            "-m",
            *overrides(data_dir, "test=true", f"hydra.sweep.dir={sweep}", "model.loss.rol_weight=oops,0.5"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]
    error = "model.loss.rol_weight='oops': expected a number"
    assert "Sweep summary: 2 jobs (1 done, 1 failed)" in out
    assert f"job 0 (model.loss.rol_weight=oops) failed: {'' if one_line else 'MDReIDError: '}{error}" in out
    status = json.loads((sweep / "0" / "job_status.json").read_text())
    assert status["status"] == "failed" and status["error"].endswith(error)
    if one_line:
        assert "error: 1 of 2 jobs failed or never ran" in proc.stderr and "Traceback" not in out
    failed, done = sorted(summary_rows(sweep), key=lambda r: r["job"])
    check_row_against_job(done, sweep)
    assert (failed["status"], failed["model.loss.rol_weight"], failed["val/score"]) == ("failed", "oops", "")
    assert failed["note"].endswith(error)


@pytest.mark.slow
def test_ddp_spawn_multirun_runs_each_job_once(data_dir: Path, tmp_path: Path) -> None:
    """Two 2-process jobs: one sweep tree, no sweep re-launched in the child ranks. The second job drops
    whole modalities per step, which DDP only accepts with find_unused_parameters (docs/scaling.md)."""
    logs = tmp_path / "logs"
    out = cli(
        "train",
        "-m",
        *overrides(
            data_dir,
            "test=true",
            f"paths.log_dir={logs}",
            "trainer=ddp_spawn_cpu",
            "trainer.strategy.find_unused_parameters=true",
            "data.modality_dropout=null,{p:0.5,mode:batch}",
        ),
        cwd=tmp_path,
    )
    assert out.count("Launching 2 jobs locally") == 1
    (tree,) = [p.parent for p in logs.rglob("multirun.yaml")]
    jobs = job_dirs(tree)
    assert [j.name for j in jobs] == ["0", "1"]
    assert all((j / "metrics.json").is_file() for j in jobs)
    assert [job_config(j)["data"]["modality_dropout"] for j in jobs] == [None, {"p": 0.5, "mode": "batch"}]
    assert all(job_config(j)["trainer"]["devices"] == 2 for j in jobs)


@pytest.mark.slow
def test_optuna_search_optimises_the_returned_val_score(data_dir: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "optuna"
    cli(
        "train",
        *overrides(
            data_dir,
            "hparams_search=mml_optuna",
            "hydra.sweeper.n_trials=2",
            "hydra.sweeper.sampler.n_startup_trials=2",
            "trainer.check_val_every_n_epoch=10",  # no validation epoch in the 1-epoch trials: scored at the end
            "test=false",
            "logger=csv",
            f"hydra.sweep.dir={sweep}",
        ),
        cwd=tmp_path,
    )
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(best["best_params"]) == {"model.loss.rol_weight", "model.loss.kdl_weight"}
    assert 0.0 <= best["best_params"]["model.loss.rol_weight"] <= 3.0
    assert 0.0 <= best["best_params"]["model.loss.kdl_weight"] <= 8.0
    scores = []
    for job in job_dirs(sweep):
        rows = csv.DictReader((job / "csv" / "metrics.csv").open())
        scores += [float(r["val/score"]) for r in rows if r.get("val/score")]
        # optimised on the validation split: held-out training identities, never the test split
        protocol = yaml.safe_load((job / "csv" / "hparams.yaml").read_text())["protocol"]
        assert protocol["selected_on"] == "validation" and protocol["splits"]["val"]["ids"] == 4
        assert protocol["selection"]["sweep_metric"] == "val/score"
    assert len(scores) == 2 and math.isfinite(best["best_value"])
    assert best["best_value"] == pytest.approx(max(scores), rel=1e-6)  # main() returned val/score
    # the same table as a grid sweep, ranked by the value Optuna optimised (test=false: no metrics.json)
    rows = summary_rows(sweep)
    assert [r["status"] for r in rows] == ["done", "done"]
    assert float(rows[0]["val/score"]) == best["best_value"] >= float(rows[1]["val/score"])
    assert {r["model.loss.rol_weight"] for r in rows} == {
        str(job_config(j)["model"]["loss"]["rol_weight"]) for j in job_dirs(sweep)
    }


@pytest.mark.slow
def test_submitit_local_launcher_runs_the_job(data_dir: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "submitit"
    cli(
        "train",
        "-m",
        *overrides(
            data_dir,
            "test=true",
            "hydra/launcher=submitit_local",
            "hydra.launcher.timeout_min=10",
            f"hydra.sweep.dir={sweep}",
        ),
        cwd=tmp_path,
    )
    (result,) = sweep.glob(".submitit/*/*_result.pkl")
    status, job_return = pickle.loads(result.read_bytes())
    assert status == "success" and math.isfinite(job_return.return_value)
    assert (sweep / "0" / "metrics.json").is_file()


@pytest.mark.slow
def test_slurm_preset_requests_one_task_per_gpu(data_dir: Path, tmp_path: Path) -> None:
    """Submit through a stand-in ``sbatch`` that keeps the script and refuses the job: the real sbatch flags."""
    bin_dir, script = tmp_path / "bin", tmp_path / "job.sbatch"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\ncp "$1" {script}\necho "dry run" >&2\nexit 1\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = {**ENV, "PATH": f"{bin_dir}{os.pathsep}{ENV['PATH']}"}
    out = cli(
        "train",
        "-m",
        *overrides(
            data_dir,
            "hydra/launcher=slurm",
            "trainer=ddp",
            "trainer.devices=4",
            "trainer.num_nodes=2",
            "hydra.launcher.partition=gpu",
            "seed=1,2",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ),
        cwd=tmp_path,
        env=env,
        ok=False,
    )
    assert "dry run" in out
    flags = {line.split()[1] for line in script.read_text().splitlines() if line.startswith("#SBATCH")}
    assert {
        "--ntasks-per-node=4",
        "--gpus-per-node=4",
        "--nodes=2",
        "--partition=gpu",
        "--array=0-1%2",
        "--job-name=synthetic",
        "--cpus-per-task=10",
    } <= flags


@pytest.mark.slow
def test_two_process_evaluation_equals_one_process(
    weight_sweep: Path, data_dir: Path, tmp_path: Path
) -> None:
    """The same checkpoint scored by 1 and by 2 processes (sharded features, gathered metric): all 49 rows.
    The ~270 scalars of 49 pairs also overflow the spawn result pipe unless SpawnDDPStrategy is used (no hang)."""
    (ckpt,) = (weight_sweep / "0" / "checkpoints").glob("*.ckpt")
    rows = {}
    for trainer in ("cpu", "ddp_spawn_cpu"):
        run_dir = tmp_path / trainer
        cli(
            "eval",
            *overrides(
                data_dir,
                f"trainer={trainer}",
                "eval.pairs=all",
                f"ckpt_path='{ckpt}'",
                f"hydra.run.dir={run_dir}",
                drop=("callbacks",),
            ),
            cwd=tmp_path,
        )
        rows[trainer] = json.loads((run_dir / "metrics.json").read_text())["rows"]
    one, two = rows["cpu"], rows["ddp_spawn_cpu"]
    assert len(one) == len(two) == 49
    for a, b in zip(one, two, strict=True):
        assert (a["query"], a["gallery"], a["num_valid"]) == (b["query"], b["gallery"], b["num_valid"])
        for metric in ("mAP", "R1", "R5", "R10", "mINP"):
            assert a[metric] == pytest.approx(b[metric], abs=1e-6), (a["query"], a["gallery"], metric)


def test_spawn_strategy_hands_metrics_over_in_a_file(tmp_path: Path) -> None:
    """More callback metrics than a pipe holds (64 KiB) reach the launching process; the pipe carries a path."""
    overrides = [
        "experiment=synthetic",
        "trainer=ddp_spawn_cpu",
        "trainer.strategy.find_unused_parameters=true",
    ]
    strategy = instantiate(compose_cfg("train.yaml", overrides, tmp_path).trainer.strategy)
    assert isinstance(strategy, SpawnDDPStrategy) and strategy._ddp_kwargs == {"find_unused_parameters": True}
    strategy._configure_launcher()
    launcher = strategy.launcher
    assert isinstance(launcher, FileMetricsLauncher) and launcher._start_method == "spawn"
    metrics = {f"test/pair{i}/mAP": torch.tensor(float(i)) for i in range(1000)}
    extra = launcher.get_extra_results(SimpleNamespace(callback_metrics=metrics))
    assert len(pickle.dumps(extra)) < 1024
    parent = SimpleNamespace(callback_metrics={"train/loss": torch.tensor(1.0)})
    launcher.update_main_process_results(parent, extra)
    assert parent.callback_metrics == {"train/loss": torch.tensor(1.0), **metrics}
    assert not Path(extra["callback_metrics_path"]).parent.exists()
