"""Evaluation entry point: ``python -m mdreid.eval experiment=NAME ckpt_path=PATH [eval.pairs=...]``.

The model is built from the config and the checkpoint's weights are loaded strictly, so a checkpoint that does
not fit the configured model fails with the list of mismatched keys instead of silently evaluating noise.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, open_dict

from mdreid.runtime.cli_overrides import checked_overrides
from mdreid.runtime.config import config_dir
from mdreid.runtime.errors import cli_errors
from mdreid.runtime.output_dir import check_writable, keep_caches_in


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Score every configured modality pair; publish tables, metrics.json, metrics.csv and plots."""
    check_writable(cfg.paths.output_dir, "paths.output_dir")
    # imported here, not at the top, so that `--help` and Hydra's config errors need not load Lightning
    from mdreid.runtime.checkpoints import resolve_checkpoint

    ckpt = resolve_checkpoint(cfg.ckpt_path)  # a bad path fails before Lightning, the data or the model
    keep_caches_in(cfg.paths.output_dir)
    import lightning as L

    from mdreid.reporting.results_callback import PublishResults
    from mdreid.runtime.builders import build_datamodule, build_module, load_module
    from mdreid.runtime.hydra import instantiate_loggers, instantiate_trainer

    L.seed_everything(cfg.seed, workers=True)
    with open_dict(cfg):
        cfg.model.backbone.weights = None  # every weight comes from the checkpoint
    datamodule = build_datamodule(cfg)
    model = load_module(ckpt, build_module(cfg, datamodule))
    publisher = PublishResults.from_config(
        cfg,
        ckpt_path=str(cfg.ckpt_path),
        selection="checkpoint",
        epoch=ckpt.epoch,  # the checkpoint's, not this trainer's 0
        global_step=ckpt.global_step,
    )
    trainer = instantiate_trainer(cfg, [publisher], instantiate_loggers(cfg.get("logger")))
    trainer.test(model, datamodule=datamodule, verbose=False)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


@checked_overrides
@hydra.main(version_base="1.3", config_path=config_dir(), config_name="eval.yaml")
@cli_errors
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
