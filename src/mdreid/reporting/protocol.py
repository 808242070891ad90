"""The protocol record: what a reader needs to judge a number, carried by every result (metrics.json, the
checkpoint, the sweep table, W&B): the splits and their sizes, the junk rule, which split selected the
reported weights and at which epoch, the seed, the command and the software versions.

A run that selects on the test split (``data.val=test``) says so here, in ``selected_on: test``, and in the
one warning line ``warn_test_selection`` prints at start.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from mdreid.config.run import RunConfig
from mdreid.data.records import Benchmark, Record
from mdreid.data.val_split import HOLDOUT, NONE, TEST, ValConfig

log = logging.getLogger(__name__)

PROTOCOL_KEY = "protocol"  # in metrics.json and in every checkpoint of a training run
PACKAGES = {"mdreid": "mdreid", "torch": "torch", "lightning": "lightning", "open_clip": "open_clip_torch"}
SELECTED_ON = {HOLDOUT: "validation", NONE: "none", TEST: "test"}


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def git_commit() -> str | None:
    """The commit of the mdreid source tree (``-dirty`` with local changes); None outside a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def versions() -> dict[str, str | None]:
    return {**{name: _version(dist) for name, dist in PACKAGES.items()}, "git_commit": git_commit()}


def _ids(records: Sequence[Record]) -> int:
    return len({r.pid for r in records})


def split_sizes(bench: Benchmark) -> dict[str, Any]:
    """Identity and image counts of the training, validation and test splits."""
    val = bench.val
    held_out = val is not None and any(r.split == "val" for r in val.gallery)
    return {
        "train": {"ids": _ids(bench.train), "images": len(bench.train)},
        "val": None
        if val is None
        else {
            "ids": _ids(val.gallery) if held_out else None,
            "query": len(val.query),
            "gallery": len(val.gallery),
            "source": "held-out training identities" if held_out else "the test split",
        },
        "test": {
            "ids": _ids([*bench.query, *bench.gallery]),
            "query": len(bench.query),
            "gallery": len(bench.gallery),
        },
    }


def checkpoint_rule(run: RunConfig) -> str:
    """How the reported weights are chosen: the last epoch, or the best by the checkpoint monitor."""
    monitor, mode = run.checkpoint_monitor()
    return f"best {monitor} ({mode})" if monitor else "last-epoch"


def protocol_record(
    run: RunConfig,
    dataset: str,
    bench: Benchmark,
    val: ValConfig,
    command: Sequence[str],
    entry: str = "train",
) -> dict[str, Any]:
    """The record of a training run on ``dataset`` (``run``: its top-level keys); the chosen epoch is added at
    test time."""
    return {
        "dataset": dataset,
        "splits": split_sizes(bench),
        "junk_rule": bench.junk_rule,
        "validation": val.describe(),
        "selected_on": SELECTED_ON[val.mode],
        "selection": {"checkpoint": checkpoint_rule(run), "sweep_metric": run.optimized_metric},
        "seed": run.seed,
        "command": " ".join(["python -m", f"mdreid.{entry}", *(shlex.quote(o) for o in command)]),
        "versions": versions(),
    }


def evaluation_record(
    dataset: str, bench: Benchmark, trained: Mapping[str, Any] | None, command: Sequence[str]
) -> dict[str, Any]:
    """The record of ``mdreid.eval``: the split it scored, and how the checkpoint was trained and selected
    (``trained``, the record the checkpoint carries; None for an official file or an older checkpoint)."""
    trained = dict(trained) if isinstance(trained, Mapping) else None
    return {
        "dataset": dataset,
        "splits": {"test": split_sizes(bench)["test"]},
        "junk_rule": bench.junk_rule,
        "validation": trained.get("validation") if trained else "unknown: the checkpoint records no protocol",
        "selected_on": trained.get("selected_on") if trained else "unknown",
        "selection": dict(trained.get("selection") or {}) if trained else {},
        "seed": trained.get("seed") if trained else None,
        "command": " ".join(["python -m mdreid.eval", *(shlex.quote(o) for o in command)]),
        "versions": versions(),
        "training": trained,
    }


def warn_test_selection(val: ValConfig, selecting: Mapping[str, str]) -> None:
    """The one line a run that validates on the test split prints at start."""
    if val.mode == TEST:
        chosen = ", ".join(f"{k}={v}" for k, v in selecting.items()) or "nothing yet"
        log.warning(
            "data.val=test: validation runs on the TEST split, so val/* metrics and what is selected on them "
            "(%s) are test-derived; every output of this run says so (selected_on: test)",
            chosen,
        )


def summarize_protocol(loggers: Sequence[Any], record: Mapping[str, Any]) -> None:
    """The protocol in the W&B run summary, so a dashboard shows how each run's number was selected."""
    from lightning.pytorch.loggers import WandbLogger

    selection = record.get("selection") or {}
    flat = {
        "protocol/dataset": record.get("dataset"),
        "protocol/selected_on": record.get("selected_on"),
        "protocol/validation": record.get("validation"),
        "protocol/checkpoint": selection.get("checkpoint"),
        "protocol/epoch": selection.get("epoch"),
        "protocol/seed": record.get("seed"),
        "protocol/junk_rule": record.get("junk_rule"),
    }
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.summary.update(flat)


def describe(record: Mapping[str, Any]) -> str:
    """The record as one block of text (``mdreid.eval`` prints it)."""
    splits = record.get("splits") or {}
    lines = [f"protocol: {record.get('dataset')} (junk rule: {record.get('junk_rule')})"]
    for name in ("train", "val", "test"):
        sizes = splits.get(name)
        if sizes:
            lines.append(f"  {name:<5} " + ", ".join(f"{k} {v}" for k, v in sizes.items() if v is not None))
    selection = record.get("selection") or {}
    lines.append(f"  validation: {record.get('validation')}")
    lines.append(
        f"  selected on: {record.get('selected_on')}; checkpoint: {selection.get('checkpoint')}"
        + (f" (epoch {selection['epoch']})" if selection.get("epoch") is not None else "")
        + f"; sweep metric: {selection.get('sweep_metric')}"
    )
    lines.append(f"  seed {record.get('seed')}; command: {record.get('command')}")
    lines.append("  versions: " + ", ".join(f"{k} {v}" for k, v in (record.get("versions") or {}).items()))
    return "\n".join(lines)
