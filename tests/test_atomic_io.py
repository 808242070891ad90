"""Result files and checkpoints are written atomically: a failed write leaves the old file intact."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from mdreid.runtime.atomic_checkpoint_io import AtomicCheckpointIO
from mdreid.runtime.atomic_io import atomic_write, atomic_write_json
from mdreid.runtime.errors import MDReIDError


def test_json_roundtrip_and_no_temp_left(tmp_path: Path) -> None:
    out = atomic_write_json(tmp_path / "sub" / "metrics.json", {"mAP": 1.5})
    assert json.loads(out.read_text()) == {"mAP": 1.5}
    assert [p.name for p in out.parent.iterdir()] == ["metrics.json"]


def test_crash_mid_write_keeps_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    atomic_write_json(target, {"v": 1})

    def boom(fh) -> None:
        fh.write(b'{"v": 2, "trunc')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, boom)
    assert json.loads(target.read_text()) == {"v": 1}
    assert sorted(os.listdir(tmp_path)) == ["metrics.json"]


def test_unwritable_folder_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(MDReIDError, match="cannot write to .*file"):
        atomic_write_json(blocker / "metrics.json", {})


def test_checkpoint_io_roundtrip(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    path = tmp_path / "ckpts" / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.arange(3)}}, path)
    assert torch.equal(io.load_checkpoint(path)["state_dict"]["w"], torch.arange(3))
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]
