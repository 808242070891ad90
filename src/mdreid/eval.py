"""Evaluation entry point: ``python -m mdreid.eval experiment=NAME ckpt_path=PATH [eval.pairs=...]``.

The model is built from the config and the checkpoint's weights are loaded strictly, so a checkpoint that does
not fit the configured model fails with the list of mismatched keys instead of silently evaluating noise.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import lightning as L
import torch
from omegaconf import DictConfig

from mdreid.atomic_io import atomic_write_text
from mdreid.config import config_dir
from mdreid.errors import MDReIDError, cli_errors
from mdreid.instantiate import instantiate_loggers, instantiate_trainer
from mdreid.module import ReIDModule
from mdreid.reports import print_result
from mdreid.train import build_datamodule, build_module, write_metrics

log = logging.getLogger(__name__)


def load_weights(model: ReIDModule, ckpt_path: str | Path) -> None:
    """Load a Lightning checkpoint's ``state_dict`` strictly, with a readable key mismatch report."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise MDReIDError(f"ckpt_path={str(path)!r} does not exist; point it at a .ckpt file written by mdreid.train")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
        raise MDReIDError(f"ckpt_path={str(path)!r} is not a readable checkpoint ({type(err).__name__}: {err})") from err
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if state is None:
        raise MDReIDError(f"ckpt_path={str(path)!r} has no 'state_dict'; use a checkpoint written by mdreid.train")
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or shapes:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
            if keys:
                more = f" (+{len(keys) - 5} more)" if len(keys) > 5 else ""
                parts.append(f"{label}: {', '.join(keys[:5])}{more}")
        raise MDReIDError(
            f"checkpoint {path} does not fit the configured model ({'; '.join(parts)}); "
            "use the experiment/model overrides the checkpoint was trained with"
        )
    model.load_state_dict(state, strict=True)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Score every configured modality pair and write metrics.json / metrics.csv into the run directory."""
    L.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    model = build_module(cfg, datamodule)
    load_weights(model, cfg.ckpt_path)
    trainer = instantiate_trainer(cfg, callbacks=[], loggers=instantiate_loggers(cfg.get("logger")))
    trainer.test(model, datamodule=datamodule, verbose=False)
    result = model.last_result
    if trainer.is_global_zero and result is not None:
        out = Path(cfg.paths.output_dir)
        write_metrics(out / "metrics.json", cfg, result, {"ckpt_path": str(cfg.ckpt_path)})
        atomic_write_text(out / "metrics.csv", result.to_csv())
        print_result(result)
        log.info("wrote %s and %s", out / "metrics.json", out / "metrics.csv")
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="eval.yaml")
@cli_errors
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
