"""Result files and checkpoints are written atomically: a failed write leaves the old file intact."""

from __future__ import annotations

import errno
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mdreid.files.atomic_io import atomic_write, atomic_write_json
from mdreid.lightning_plugins.atomic_checkpoint_io import AtomicCheckpointIO
from mdreid.process.errors import MDReIDError


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


def test_a_full_disk_is_one_line_naming_the_file_and_the_free_space(tmp_path: Path) -> None:
    target = tmp_path / "last.ckpt"
    atomic_write(target, lambda fh: fh.write(b"good"))

    def full(fh) -> None:
        fh.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(
        MDReIDError,
        match=r"cannot write .*last\.ckpt \(No space left on device; [\d.]+ MB free there\); the previous last\.ckpt is intact",
    ):
        atomic_write(target, full)
    assert target.read_bytes() == b"good" and sorted(os.listdir(tmp_path)) == ["last.ckpt"]


class _FullDisk(io.RawIOBase):
    """A file whose device fills after ``room`` bytes, as a full disk refuses the next write."""

    def __init__(self, target, room: int) -> None:
        self.target, self.room = target, room

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.target.write(data)


def test_a_checkpoint_on_a_full_disk_names_the_os_reason(tmp_path: Path) -> None:
    """torch's zip writer turns the OS error into its own RuntimeError; the line still gives the OS reason,
    as the README shows it."""
    target = tmp_path / "last.ckpt"
    atomic_write(target, lambda fh: fh.write(b"good"))
    with pytest.raises(MDReIDError) as info:
        atomic_write(target, lambda fh: torch.save({"w": torch.zeros(1 << 12)}, _FullDisk(fh, 1000)))
    assert re.fullmatch(
        rf"cannot write {re.escape(str(target))} \(No space left on device; [\d.]+ MB free there\); the previous "
        r"last\.ckpt is intact\. Free some space or fix the folder's permissions, or point the run elsewhere "
        r"\(hydra\.run\.dir=\.\.\. or paths\.log_dir=\.\.\.\)",
        str(info.value),
    ), str(info.value)
    assert target.read_bytes() == b"good" and sorted(os.listdir(tmp_path)) == ["last.ckpt"]


# a checkpoint larger than the file-size limit: torch's zip writer fails the way a full disk makes it fail
_SHORT_WRITE = """
import resource, signal, sys, torch
from mdreid.lightning_plugins.atomic_checkpoint_io import AtomicCheckpointIO
from mdreid.process.errors import MDReIDError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write instead of a killed process
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, 1 << 16))
try:
    AtomicCheckpointIO().save_checkpoint({"w": torch.zeros(1 << 16)}, sys.argv[1])
except MDReIDError as err:
    print(err)
"""


def test_a_checkpoint_write_cut_short_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    target = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"w": torch.arange(3)}, target)
    before = target.read_bytes()
    run = subprocess.run(
        [sys.executable, "-c", _SHORT_WRITE, str(target)], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"cannot write {target} (File too large; " in run.stdout and "MB free there" in run.stdout, (
        run.stdout
    )
    assert "the previous last.ckpt is intact" in run.stdout
    assert target.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["last.ckpt"]
