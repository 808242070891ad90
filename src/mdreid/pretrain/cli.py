"""Proxy-foundation pretraining: ``python -m mdreid.pretrain [overrides]``.

Trains the tiny CLIP-layout ViT on the RGB-only pool of other identities (:mod:`mdreid.data.synthetic.pool`)
and writes its visual tower as an open_clip ``.safetensors`` file, with a provenance JSON beside it (command,
seed, wall time, machine, sha256). Fine-tuning loads it as ``model.backbone.weights=FILE``, exactly as it
loads converted CLIP weights. Resumable with ``ckpt_path=<run dir>/checkpoints/last.ckpt``. After training
the tower is scored zero-shot on the synthetic bench copy (:mod:`mdreid.pretrain.zero_shot`, switched by
``zero_shot.enabled``) and the scores go into the provenance.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mdreid.checkpoint import resolve_checkpoint
from mdreid.config.cli_overrides import checked_overrides
from mdreid.config.location import config_dir
from mdreid.config.run import RunConfig
from mdreid.config.sections import typed_section
from mdreid.files.atomic_io import atomic_write_json
from mdreid.files.file_hash import sha256
from mdreid.files.portable_paths import portable, portable_overrides
from mdreid.models.clip_weights import load_clip_visual_weights, save_visual_weights
from mdreid.pretrain.zero_shot import ZeroShotSection, zero_shot
from mdreid.process.errors import MDReIDError, cli_errors
from mdreid.process.interrupts import last_checkpoint, stop_cleanly
from mdreid.process.output_dir import check_writable, keep_caches_in

log = logging.getLogger(__name__)


def init_record(path: str | None) -> dict[str, Any] | None:
    """The tower a later curriculum stage started from: its name, hash and (when beside it) provenance, so the
    chain of stages can be regenerated; never its absolute path."""
    if not path:
        return None
    beside = Path(path).with_suffix(".json")
    earlier = json.loads(beside.read_text()) if beside.is_file() else None
    return {"file": Path(path).name, "sha256": sha256(path), "provenance": earlier}


def provenance(
    cfg: DictConfig,
    run: RunConfig,
    out: Path,
    wall_s: float,
    metrics: dict[str, float],
    zero_shot: dict[str, Any] | None,
) -> dict[str, Any]:
    """What a shipped weight file needs beside it to be trusted and regenerated; paths in it are relative to
    the folder of ``out`` (and of this record)."""
    resumed = run.ckpt_path
    return {
        "file": out.name,
        "sha256": sha256(out),
        "command": "python -m mdreid.pretrain " + " ".join(portable_overrides(sys.argv[1:], out.parent)),
        "seed": cfg.seed,
        "pool": OmegaConf.to_container(cfg.data.pool, resolve=True),
        "epochs": cfg.trainer.max_epochs,
        "wall_time_s": round(wall_s, 1),
        "resumed_from": portable(resumed, out.parent) if resumed else None,
        "init_weights": init_record(cfg.init_weights),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        },
        "date": time.strftime("%Y-%m-%d"),
        "final": metrics,
        "zero_shot": zero_shot,
    }


def pretrain(cfg: DictConfig) -> dict[str, float]:
    """Render (or reuse) the pool, train the tower with the supervised contrastive loss, write the tower and
    its provenance."""
    start = time.time()
    diagnostic = typed_section(ZeroShotSection, cfg.zero_shot, "zero_shot")  # read before hours of training
    check_writable(cfg.paths.output_dir, "paths.output_dir")
    run = RunConfig.parse(cfg)
    trust = run.trust_checkpoint
    if cfg.init_weights and not Path(cfg.init_weights).is_file():
        raise MDReIDError(f"init_weights={cfg.init_weights}: no such tower file; use a .safetensors or null")
    if run.ckpt_path:
        # a missing, folder, truncated or code-carrying file is one line, not a traceback
        resolve_checkpoint(run.ckpt_path, trust=trust, pretraining=True)
    keep_caches_in(cfg.paths.output_dir)
    import lightning as L  # Lightning imports matplotlib: after the line above

    from mdreid.config.hydra import instantiate_callbacks, instantiate_trainer
    from mdreid.files.safe_load import checkpoint_globals
    from mdreid.pretrain.contrastive import ProxyPretrainModule

    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data, _convert_="all")
    model = ProxyPretrainModule(backbone=cfg.backbone, image_size=datamodule.spec.size, optim=cfg.optim)
    if cfg.init_weights:  # a later stage of a curriculum: continue from an earlier stage's tower
        load_clip_visual_weights(model.visual, cfg.init_weights)
    datamodule.prepare_data()
    trainer = instantiate_trainer(cfg, instantiate_callbacks(run.callbacks), [])
    with checkpoint_globals():
        trainer.fit(model, datamodule=datamodule, ckpt_path=run.ckpt_path, weights_only=not trust)
    metrics = {k: round(float(v), 4) for k, v in trainer.callback_metrics.items() if k.endswith("_epoch")}
    out = save_visual_weights(model.visual_state_dict(), cfg.out)
    wall_s = time.time() - start  # the training's cost; the diagnostic below is not part of it
    scores = None
    if diagnostic.enabled:
        backbone = OmegaConf.to_container(cfg.backbone, resolve=True)
        scores = zero_shot(out, backbone, diagnostic.data)
        log.info(
            "zero-shot mAP: R->R %.1f, grayscale R->R %.1f, N->N %.1f, T->T %.1f, RNT->RNT %.1f",
            scores["mAP"]["R->R"],
            scores["grayscale_R->R"]["mAP"],
            scores["mAP"]["N->N"],
            scores["mAP"]["T->T"],
            scores["mAP"]["RNT->RNT"],
        )
    record = provenance(cfg, run, out, wall_s, metrics, scores)
    atomic_write_json(out.with_suffix(".json"), record)
    log.info("wrote %s (sha256 %s) and its provenance %s", out, record["sha256"], out.with_suffix(".json"))
    return metrics


@cli_errors
def run(cfg: DictConfig) -> None:
    with stop_cleanly(last_checkpoint(cfg.paths.output_dir)):
        pretrain(cfg)


@checked_overrides("pretrain.yaml")
@hydra.main(version_base="1.3", config_path=config_dir(), config_name="pretrain.yaml")
def main(cfg: DictConfig) -> None:
    run(cfg)
