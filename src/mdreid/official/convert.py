"""``official convert``: an official MDReID ``.pth`` written as an mdreid checkpoint, to fine-tune from
(``init_from=``) or to keep; tensors and plain values only, so it loads without trusting anything."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning
import torch

from mdreid.config.check import check_command_line
from mdreid.config.hydra import compose_config
from mdreid.data.data_config import DataConfig
from mdreid.data.readers import junk_rule
from mdreid.files.atomic_io import atomic_write
from mdreid.files.file_hash import sha256
from mdreid.metrics.eval_config import EvalConfig
from mdreid.module import ReIDModule
from mdreid.official.layout import RELEASES, describe_mismatch
from mdreid.official.reader import load_official, official_checkpoint
from mdreid.process.errors import MDReIDError


def convert(
    src: str | Path, dst: str | Path, experiment: str, overrides: Sequence[str] = (), trust: bool = False
) -> Path:
    """Write the official checkpoint ``src`` as an mdreid checkpoint ``dst`` with ``experiment``'s model
    config (loss, optimiser, schedule: what a fine-tuning run from it would use). The output holds tensors
    and plain values only, so it loads without trusting anything."""
    src, dst = Path(src), Path(dst)
    words = [f"experiment={experiment}", *overrides]
    check_command_line("train.yaml", words, multirun=False, entry="python -m mdreid.official convert")
    ckpt = official_checkpoint(src, trust)
    converted = ckpt.converted
    # imported here: the factory reads official files through this package
    from mdreid.factory import adopt_architecture

    # the tower's sizes and the input size come from the tensors, as eval reads them; an override that
    # contradicts them is an error naming both
    cfg = adopt_architecture(compose_config("train", words), ckpt, words)
    data = DataConfig.parse(cfg.data)
    layout = converted.layout
    release = RELEASES.get(data.dataset) if data.synth is None else None
    if release is not None:
        contradiction = describe_mismatch(
            layout, release.num_classes, release.num_cameras, layout.grid_tokens
        )
        if contradiction:
            raise MDReIDError(f"{src} does not fit experiment={experiment}: {contradiction}")
    model = ReIDModule.from_config(
        cfg.model,
        num_classes=layout.num_classes,
        num_cameras=layout.num_cameras,
        image_size=list(data.image_size),
        junk=junk_rule(data.dataset),
        evaluation=EvalConfig.parse(cfg.eval),
    )
    load_official(model, converted, str(src))
    payload = {
        "state_dict": model.state_dict(),
        ReIDModule.CHECKPOINT_HYPER_PARAMS_KEY: dict(model.hparams),  # a plain dict, not Lightning's type
        "pytorch-lightning_version": lightning.__version__,
        "epoch": 0,
        "global_step": 0,
        "converted_from": {
            "file": str(src.resolve()),
            "sha256": sha256(src),
            "experiment": experiment,
            "overrides": list(overrides),
            "dropped": list(converted.unused),
        },
    }
    atomic_write(dst, lambda fh: torch.save(payload, fh))
    return dst
