"""W&B offline logging end to end: the run folder ``wandb sync`` uploads holds the config with the parameter
counts, the test scalars, the 49-row pair table, the plots as images and the CMC line series."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import TINY_OVERRIDES, run_in_fresh_home
from mdreid.data.data_config import DataConfig
from mdreid.factory import build_datamodule, build_module
from mdreid.metrics.results import ROW_FIELDS
from mdreid.train import train

LOG_BLOCK = 32768  # LevelDB log block size
CHUNK_HEADER = 7  # crc32c (4) + length (2, little-endian) + chunk type (1)
FILE_HEADER = b":W&B"  # then a 2-byte magic and a 1-byte version
FULL, LAST = 1, 4


def wandb_records(path: Path) -> Iterator:
    """The protobuf records of a ``run-*.wandb`` transaction log (wandb 0.31 has no Python reader left).

    The file is a 7-byte W&B header followed by LevelDB log framing: 32 KiB blocks of chunks, a record
    split over FIRST/MIDDLE/LAST chunks or whole in a FULL one, and block tails under 7 bytes zero-padded.
    """
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data.startswith(FILE_HEADER), f"{path} is not a W&B transaction log"
    pos, pending = CHUNK_HEADER, b""
    while pos + CHUNK_HEADER <= len(data):
        room = LOG_BLOCK - pos % LOG_BLOCK
        if room < CHUNK_HEADER:
            pos += room
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        pending += data[pos + CHUNK_HEADER : pos + CHUNK_HEADER + length]
        pos += CHUNK_HEADER + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def item_name(item) -> str:
    """A config/history item's key: wandb-core writes it to ``key`` or, as a path, to ``nested_key``."""
    return item.key or "/".join(item.nested_key)


@pytest.fixture
def wandb_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Offline W&B with every W&B folder inside tmp_path; the run is finished even when the test fails.

    wandb reads the environment once per process into a singleton: tear it down on both sides, so an earlier
    ``WANDB_MODE=disabled`` user does not disable this run and this run does not leave later tests offline.
    """
    import wandb

    wandb.teardown()
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home"))
    yield
    wandb.finish()
    wandb.teardown()


@pytest.mark.slow
def test_offline_run_holds_config_scalars_table_and_plots(tiny_cfg, wandb_offline, tmp_path: Path) -> None:
    import wandb

    cfg = tiny_cfg(
        "train.yaml",
        "logger=wandb",
        "test=true",
        "eval.plots=true",
        "trainer.max_epochs=1",
        "trainer.check_val_every_n_epoch=10",
    )
    metrics = train(cfg)
    wandb.finish()  # flushes the transaction log and the media

    runs = sorted((Path(cfg.paths.output_dir) / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    (log_file,) = runs[0].glob("run-*.wandb")
    config, history, summary, groups = {}, {}, {}, set()
    for record in wandb_records(log_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            groups.add(record.run.run_group)
        elif kind == "summary":
            summary.update({item_name(item): json.loads(item.value_json) for item in record.summary.update})
        elif kind == "config":
            config.update({item_name(item): json.loads(item.value_json) for item in record.config.update})
        elif kind == "history":
            history.update({item_name(item): json.loads(item.value_json) for item in record.history.item})

    model = build_module(cfg, build_datamodule(DataConfig.parse(cfg.data)))
    assert config["params/total"] == sum(p.numel() for p in model.parameters())
    assert config["params/trainable"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert config["cfg"]["data"]["dataset"] == "rgbnt201" and config["cfg"]["seed"] == cfg.seed
    assert history["test/score"] == pytest.approx(metrics["test/score"])
    assert history["train/loss_epoch"] > 0
    # grouped by configuration (the overrides but the seed: none outside a Hydra job), and the protocol
    (group,) = groups  # the overrides, never the seed
    assert group.startswith("rgbnt201 | ") and "trainer.max_epochs=1" in group and "seed=" not in group
    assert summary["protocol/selected_on"] == "validation" and summary["protocol/epoch"] == 1
    assert config["protocol"]["splits"]["val"]["ids"] == 4

    media = runs[0] / "files" / "media"
    (pairs_file,) = (media / "table" / "test").glob("pairs_*.table.json")
    pairs = json.loads(pairs_file.read_text())
    assert pairs["columns"] == list(ROW_FIELDS) and len(pairs["data"]) == 49
    rows = {(r[0], r[1]): dict(zip(ROW_FIELDS, r, strict=True)) for r in pairs["data"]}
    assert rows[("RNT", "RNT")]["mAP"] == pytest.approx(metrics["test/RNT->RNT/mAP"])
    assert list((media / "table" / "test").glob("cmc_table_*.table.json")), "CMC line series not logged"
    images = {p.name.rsplit("_", 2)[0] for p in (media / "images" / "test").glob("*.png")}
    assert {"heatmap_mAP", "heatmap_R1", "cmc", "tsne", "ranked_R-N"} <= images


@pytest.mark.slow
def test_an_offline_run_writes_nothing_outside_its_run_folder(
    synthetic_data_dir: Path, tmp_path: Path
) -> None:
    """wandb's cache, staging and settings folders (~/.cache/wandb, ~/.local/share/wandb, ~/.config/wandb)
    go to <run dir>/wandb/ instead, and matplotlib's font cache to <run dir>/.matplotlib."""
    args = [*TINY_OVERRIDES, "logger=wandb", "trainer.max_epochs=1", "eval.plots=false", "eval.pairs=paper"]
    args += [f"paths.data_dir={synthetic_data_dir}", f"hydra.run.dir={tmp_path / 'work' / 'run'}"]
    proc, outside = run_in_fresh_home("train", args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list((tmp_path / "work" / "run" / "wandb").glob("offline-run-*"))
    assert not outside, outside
    assert list((tmp_path / "work" / "run" / ".matplotlib").glob("fontlist*.json"))


def test_each_job_of_a_process_logs_into_its_own_run(wandb_offline, tmp_path: Path) -> None:
    """A multirun's jobs share one process: the second job's logger finishes the first job's open run and
    starts its own, instead of logging into the first one (Lightning reuses ``wandb.run`` when one is open)."""
    import wandb

    from mdreid.lightning_plugins.wandb_logger import WandbLogger

    first = WandbLogger(project="mdreid", offline=True, save_dir=str(tmp_path / "job0")).experiment
    first.log({"x": 1.0})
    second = WandbLogger(project="mdreid", offline=True, save_dir=str(tmp_path / "job1")).experiment
    assert second.id != first.id and wandb.run is second
    assert first._is_finished and not second._is_finished
    assert Path(second.dir).is_relative_to(tmp_path / "job1")
