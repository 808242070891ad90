"""What a run prints: no third-party noise before the first useful line, and plain progress lines (epoch,
step, loss, img/s, ETA) when the output goes to a file, as in SLURM logs and CI."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.demos.boring_classes import BoringModel

from conftest import TINY_OVERRIDES
from mdreid.runtime.errors import MDReIDError
from mdreid.runtime.logs import PYTREE_DEPRECATION, ParamSummary, WandbLogger, quiet_known_noise
from mdreid.runtime.plain_progress import PlainProgress, batch_size, progress_bar, progress_line

# what a plain `python -m mdreid.train` printed before: (what it was, a fragment of it), matched ignoring case
NOISE = [
    ("Lightning's note on the model summary callback", "Trainer already configured with model summary"),
    ("Lightning's litlogger advert", "litlogger"),
    ("wandb's warning about the anonymous setting", "anonymous setting has no effect"),
    ("torch's LeafSpec deprecation from Lightning's _pytree", "LeafSpec"),
    ("a FLOPs column or total that reads 0", "flops"),
    ("a Rich progress bar redrawn into a file", "━"),
]
LINE = re.compile(
    r"^epoch (\d+)/2 \| step (\d+)/(\d+) \| batch (\d+)/(\d+) \| loss [-+.\deE]+ \| [.\d]+ img/s"
    r" \| ETA \d+:\d\d:\d\d$"
)


@pytest.mark.slow
def test_tiny_training_logs_progress_lines_and_no_noise(synthetic_data_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    wandb_home = tmp_path / "wandb-home"
    # offline W&B (make test disables it) with every W&B folder in tmp_path; not silent, so its warnings show
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env["WANDB_MODE"] = "offline"
    env.update({f"WANDB_{kind}DIR": str(wandb_home) for kind in ("", "CONFIG_", "CACHE_", "DATA_")})
    overrides = [
        *TINY_OVERRIDES,
        f"paths.data_dir={synthetic_data_dir}",
        f"hydra.run.dir={run_dir}",
        "callbacks=default",
        "logger=wandb",
        "trainer.enable_progress_bar=true",
        "trainer.enable_model_summary=true",
        "callbacks.progress_bar.every_n_steps=1",
        "test=false",
        "plots=false",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "mdreid.train", *overrides],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert list((run_dir / "wandb").glob("offline-run-*")), "the W&B logger did not start: " + out[-2000:]
    for what, fragment in NOISE:
        hits = [line for line in out.splitlines() if fragment.lower() in line.lower()]
        assert not hits, f"{what}: {hits}"
    assert "model summary" in out and "total params" in out

    progress = [m for m in map(LINE.match, proc.stdout.splitlines()) if m]
    assert progress, proc.stdout[-3000:]
    epochs, steps = {int(m[1]) for m in progress}, [int(m[2]) for m in progress]
    total, batches = int(progress[-1][3]), int(progress[-1][5])
    assert epochs == {1, 2} and steps == list(range(1, total + 1)) and total == 2 * batches
    assert re.search(
        r"^epoch 2 validation \| \d+ batch(es)? in \d+:\d\d:\d\d \| val/score ", proc.stdout, re.M
    )


def test_progress_line_format() -> None:
    line = progress_line(
        epoch=2,
        max_epochs=30,
        step=40,
        total_steps=900,
        batch=10,
        batches=30,
        metrics={"loss": 2.34567},
        images_per_s=123.45,
        eta_s=754.4,
    )
    assert line == "epoch 2/30 | step 40/900 | batch 10/30 | loss 2.346 | 123.5 img/s | ETA 0:12:34"
    unknown = progress_line(
        epoch=1,
        max_epochs=-1,
        step=0,
        total_steps=float("inf"),
        batch=1,
        batches=float("inf"),
        metrics={},
        images_per_s=None,
        eta_s=None,
    )
    assert unknown == "epoch 1/? | step 0/? | batch 1/? | ? img/s | ETA ?"


def test_batch_size_counts_samples_of_any_batch_layout() -> None:
    assert batch_size({"RGB": torch.zeros(6, 3, 4, 4), "label": torch.zeros(6)}) == 6
    assert batch_size((torch.zeros(5, 3), torch.zeros(5))) == 5
    assert batch_size({"meta": "x"}) == 0


def test_progress_bar_style() -> None:
    # pytest captures stdout, so it is not a terminal here
    assert isinstance(progress_bar(every_n_steps=3), PlainProgress)
    assert isinstance(progress_bar("rich"), RichProgressBar)
    with pytest.raises(MDReIDError, match="callbacks.progress_bar.style"):
        progress_bar("fancy")
    with pytest.raises(MDReIDError, match="every_n_steps"):
        PlainProgress(0)


class LossModel(BoringModel):
    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = self.step(batch)
        self.log("loss", loss, prog_bar=True)
        return loss


def test_plain_progress_prints_every_n_steps_and_each_epoch_end(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    trainer = L.Trainer(
        max_epochs=2,
        limit_train_batches=5,
        limit_val_batches=2,
        callbacks=[PlainProgress(every_n_steps=2), ParamSummary(max_depth=1)],
        enable_model_summary=False,
        logger=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
        accelerator="cpu",
    )
    with caplog.at_level(logging.INFO, logger="mdreid.runtime.logs"):
        trainer.fit(LossModel())
    lines = capsys.readouterr().out.splitlines()
    steps = [re.search(r"\| step (\d+)/10 \|", line) for line in lines if " | step " in line]
    assert [int(m[1]) for m in steps if m] == [2, 4, 5, 6, 8, 10], lines
    validation = [line for line in lines if " validation | " in line]
    expected = [rf"epoch {e} validation \| 2 batches in \d+:\d\d:\d\d" for e in (1, 2)]  # no sanity check
    assert len(validation) == 2 and all(map(re.fullmatch, expected, validation)), lines
    summary = "\n".join(r.getMessage() for r in caplog.records if r.name == "mdreid.runtime.logs")
    assert "total params" in summary and "FLOPs" not in summary


def test_wandb_logger_leaves_out_the_anonymous_setting(tmp_path: Path) -> None:
    assert "anonymous" not in WandbLogger(save_dir=str(tmp_path), offline=True)._wandb_init
    assert (
        WandbLogger(save_dir=str(tmp_path), offline=True, anonymous=True)._wandb_init["anonymous"] == "allow"
    )


def test_only_the_known_deprecation_is_filtered() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_known_noise()
        message = PYTREE_DEPRECATION + ", use ..."
        warnings.warn_explicit(
            message, FutureWarning, "_pytree.py", 21, "lightning.pytorch.utilities._pytree"
        )
        warnings.warn_explicit(message, FutureWarning, "mine.py", 1, "mdreid.mine")
        warnings.warn_explicit(
            "something else", FutureWarning, "_pytree.py", 22, "lightning.pytorch.utilities._pytree"
        )
    assert [str(w.message) for w in caught] == [message, "something else"]
