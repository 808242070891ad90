"""Evaluation entry point: ``python -m mdreid.eval experiment=NAME ckpt_path=PATH [eval.pairs=...]``.

The model is built from the config and the checkpoint's weights are loaded strictly, so a checkpoint that does
not fit the configured model fails with the list of mismatched keys instead of silently evaluating noise.
"""

from __future__ import annotations

from pathlib import Path

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, open_dict

from mdreid.config import config_dir
from mdreid.errors import MDReIDError, cli_errors
from mdreid.instantiate import instantiate_loggers, instantiate_trainer
from mdreid.module import ReIDModule
from mdreid.output_dir import check_writable
from mdreid.results_callback import PublishResults
from mdreid.train import build_datamodule, build_module, results_header


def load_weights(model: ReIDModule, ckpt_path: str | Path) -> None:
    """Load a Lightning checkpoint's ``state_dict`` strictly, with a readable key mismatch report."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise MDReIDError(
            f"ckpt_path={str(path)!r} does not exist; point it at a .ckpt file written by mdreid.train"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
        raise MDReIDError(
            f"ckpt_path={str(path)!r} is not a readable checkpoint ({type(err).__name__}: {err})"
        ) from err
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if state is None:
        raise MDReIDError(
            f"ckpt_path={str(path)!r} has no 'state_dict'; use a checkpoint written by mdreid.train"
        )
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
    """Score every configured modality pair; publish tables, metrics.json, metrics.csv and plots."""
    check_writable(cfg.paths.output_dir, "paths.output_dir")
    L.seed_everything(cfg.seed, workers=True)
    with open_dict(cfg):
        cfg.model.backbone.weights = None  # every weight comes from the checkpoint
    datamodule = build_datamodule(cfg)
    model = build_module(cfg, datamodule)
    load_weights(model, cfg.ckpt_path)
    header = results_header(cfg, ckpt_path=str(cfg.ckpt_path), selection="checkpoint")
    publisher = PublishResults(cfg.paths.output_dir, header, plots=cfg.get("plots", True))
    trainer = instantiate_trainer(cfg, [publisher], instantiate_loggers(cfg.get("logger")))
    trainer.test(model, datamodule=datamodule, verbose=False)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="eval.yaml")
@cli_errors
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
