"""The sweep table rebuilt from job folders alone (``python -m mdreid.sweep_summary DIR``): each status from its
evidence, ranking by the optimized metric or else by RNT->RNT mAP, and one error line for a folder that is no
sweep. The job folders are written by hand here; tests/test_sweeps.py checks real multiruns."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mdreid.process.errors import MDReIDError
from mdreid.reporting.sweep_report import summary_markdown
from mdreid.reporting.sweep_table import build_table, to_markdown
from mdreid.sweep_summary import main
from mdreid.sweeps.job_status import mark_ended, mark_running


def make_job(
    sweep: Path, num: int, lr: str, groups: dict[str, float] | None = None, mode: str = "MULTIRUN"
) -> Path:
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"model.optim.base_lr={lr}", "seed=1"]))
    hydra = {"hydra": {"mode": mode, "job": {"num": num}, "sweeper": {"direction": "maximize"}}}
    (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))
    if groups is not None:
        (job / "metrics.json").write_text(json.dumps({"groups": groups, "rows": []}))
    return job


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def set_status(job: Path, **fields: object) -> None:
    path = job / "job_status.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))


def rows(sweep: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((sweep / "sweep_summary.csv").open()))


def groups(map_: float) -> dict[str, float]:
    return {"matched/RNT->RNT/mAP": map_, "matched/RNT->RNT/R1": map_ + 1.0}


def test_rebuilt_table_takes_each_status_from_the_job_folder(tmp_path: Path, capsys) -> None:
    sweep = tmp_path / "sweep"
    finished = {0: (0.1, 10.0, 50.0), 1: (0.2, 30.0, 40.0)}  # num: (lr, returned val/score, RNT->RNT mAP)
    for num, (lr, value, map_) in finished.items():
        job = make_job(sweep, num, str(lr), groups(map_))
        mark_running(job, "val/score")
        mark_ended(job, True, value)
    alive = make_job(sweep, 2, "0.3")
    mark_running(alive, "val/score")  # this test's own process: alive
    killed = make_job(sweep, 3, "0.4")
    mark_running(killed, "val/score")
    set_status(killed, pid=dead_pid())
    remote = make_job(sweep, 4, "0.5")
    mark_running(remote, "val/score")
    set_status(remote, host=f"not-{socket.gethostname()}")
    crashed = make_job(sweep, 5, "0.6")
    mark_running(crashed, "val/score")
    mark_ended(crashed, False, error=RuntimeError("CUDA out of memory\nmore lines"))
    make_job(sweep, 6, "0.7")  # no status file, no metrics.json: a sweep from before status files
    make_job(sweep, 7, "0.8", groups(99.0), mode="RUN")  # a single run's folder is no job of the sweep
    (sweep / "notes").mkdir()

    main([str(sweep)])
    table = rows(sweep)
    assert [(r["job"], r["status"]) for r in table] == [
        ("1", "done"),  # val/score 30 ranks above 10 although its mAP is lower: the optimized metric decides
        ("0", "done"),
        ("2", "running"),
        ("4", "running"),
        ("3", "failed"),
        ("5", "failed"),
        ("6", "unknown"),
    ]
    assert [r["val/score"] for r in table[:3]] == ["30.0", "10.0", ""]
    assert [r["matched/RNT->RNT/mAP"] for r in table[:2]] == ["40.0", "50.0"]
    assert table[0]["model.optim.base_lr"] == "0.2" and table[0]["seed"] == "1"
    assert f"process {os.getpid()}" in table[2]["note"] and "not checked from here" in table[3]["note"]
    assert "ended before the job finished" in table[4]["note"]
    assert table[5]["note"] == "RuntimeError: CUDA out of memory"
    markdown = (sweep / "sweep_summary.md").read_text()
    assert "7 jobs (2 done, 2 running, 2 failed, 1 unknown), best first by val/score" in markdown
    assert "Same in every job: `seed=1`" in markdown and "| model.optim.base_lr |" in markdown
    assert "| seed |" not in markdown
    assert "best first by val/score" in capsys.readouterr().out
    # the process that ran job 2 rebuilds the table on its way out: its job did not finish
    assert [j.status for j in build_table(sweep, ended_pids=(os.getpid(),)).jobs if j.num == 2] == ["failed"]


def test_without_an_optimized_metric_the_table_never_ranks_on_test(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    for num, map_ in enumerate((20.0, 60.0, 40.0)):
        make_job(sweep, num, str(num), groups(map_))  # e.g. an eval sweep: metrics.json only
    table = build_table(sweep)
    assert table.rank_by is None and [j.num for j in table.jobs] == [0, 1, 2]  # job order, not test mAP
    assert all(j.status == "done" for j in table.jobs)
    assert "in job order (no selection metric; test columns are not ranked on)" in to_markdown(table)


def test_minimize_direction_ranks_the_lowest_first(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    for num, value in enumerate((3.0, 1.0, 2.0)):
        job = make_job(sweep, num, str(num))
        hydra = yaml.safe_load((job / ".hydra" / "hydra.yaml").read_text())
        hydra["hydra"]["sweeper"]["direction"] = "minimize"
        (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))
        mark_running(job, "val/loss")
        mark_ended(job, True, value)
    table = build_table(sweep)
    assert (table.rank_by, table.descending, [j.num for j in table.jobs]) == ("val/loss", False, [1, 2, 0])


def test_a_folder_that_is_no_sweep_is_one_error_line(tmp_path: Path) -> None:
    make_job(tmp_path / "run", 0, "0.1", mode="RUN")
    with pytest.raises(MDReIDError, match="no multirun job folders"):
        build_table(tmp_path / "run")
    proc = subprocess.run(
        [sys.executable, "-m", "mdreid.sweep_summary", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        proc.returncode == 2 and proc.stderr.strip() == f"error: {tmp_path / 'missing'}: no such sweep folder"
    )


def test_jobs_of_the_plan_that_never_ran_are_listed(tmp_path: Path, capsys) -> None:
    """A sweep killed after its first job: the plan written at its start names the two jobs that never ran."""
    from omegaconf import OmegaConf

    from mdreid.sweeps.sweep_plan import BASIC_SWEEPER, write_plan

    sweep = tmp_path / "sweep"
    config = OmegaConf.create(
        {
            "hydra": {
                "sweep": {"dir": str(sweep)},
                "sweeper": {"_target_": BASIC_SWEEPER, "params": None},
                "overrides": {"task": ["model.optim.base_lr=0.1,0.2,0.3", "seed=1"]},
            }
        }
    )
    write_plan(config)
    job = make_job(sweep, 0, "0.1", groups(50.0))
    mark_running(job, "val/score")
    mark_ended(job, False, error="model.loss.rol_weight='oops': expected a number")

    main([str(sweep)])
    assert [(r["job"], r["status"], r["model.optim.base_lr"]) for r in rows(sweep)] == [
        ("0", "failed", "0.1"),
        ("1", "never ran", "0.2"),
        ("2", "never ran", "0.3"),
    ]
    out = capsys.readouterr().out
    assert "job 0 (model.optim.base_lr=0.1) failed: model.loss.rol_weight='oops': expected a number" in out
    assert "job 2 (model.optim.base_lr=0.3) never ran" in out


def test_a_sweep_selected_on_test_says_so_first(tmp_path: Path) -> None:
    """data.val=test: the jobs' protocol records say selected_on test, and the table's first line says so."""
    sweep = tmp_path / "sweep"
    for num, value in enumerate((0.3, 0.5)):
        job = make_job(sweep, num, str(num), groups(40.0))
        payload = json.loads((job / "metrics.json").read_text())
        payload["protocol"] = {"selected_on": "test" if num else "validation", "dataset": "rgbnt201"}
        (job / "metrics.json").write_text(json.dumps(payload))
        mark_running(job, "val/score")
        mark_ended(job, True, value)
    markdown = summary_markdown(build_table(sweep))
    assert markdown.splitlines()[2].startswith("SELECTED ON THE TEST SPLIT (data.val=test)")
    honest = tmp_path / "honest"
    make_job(honest, 0, "1", groups(40.0))
    (honest / "0" / "metrics.json").write_text(
        json.dumps({"groups": groups(40.0), "rows": [], "protocol": {"selected_on": "validation"}})
    )
    assert "Selected on the validation split" in summary_markdown(build_table(honest))
