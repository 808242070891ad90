"""Training entry point: ``python -m mdreid.train experiment=NAME [overrides]``.

``train(cfg)`` does the work and is what tests call through the compose API; ``main()`` is the thin Hydra
wrapper that returns the optimised metric for sweepers.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from mdreid.runtime.cli_overrides import checked_overrides
from mdreid.runtime.config import config_dir
from mdreid.runtime.errors import cli_errors

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, then (``test=true``) evaluate and publish metrics.json, metrics.csv and plots in the run directory."""
    # imported here, not at the top: Lightning, W&B and the reporting stack take seconds to load, which
    # `--help`, Hydra's own config errors and a config that fails its checks should not wait for
    from mdreid.runtime.output_dir import keep_caches_in
    from mdreid.runtime.preflight import check_train_config

    check_train_config(cfg)
    keep_caches_in(cfg.paths.output_dir)
    import lightning as L

    from mdreid.reporting.results_callback import PublishResults
    from mdreid.runtime.builders import build_datamodule, build_module, check_resumable, load_module
    from mdreid.runtime.checkpoints import resolve_checkpoint
    from mdreid.runtime.hydra import instantiate_callbacks, instantiate_loggers, instantiate_trainer

    init = resolve_checkpoint(cfg.init_from, "init_from") if cfg.get("init_from") else None
    resume = resolve_checkpoint(cfg.ckpt_path) if cfg.get("ckpt_path") else None
    L.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    model = build_module(cfg, datamodule)
    if init is not None:
        load_module(init, model).train()  # a resume (ckpt_path) restores its own weights over these
    if resume is not None:
        check_resumable(resume, model)
    del init, resume  # Lightning reads ckpt_path itself
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    callbacks.append(PublishResults.from_config(cfg))
    loggers = instantiate_loggers(cfg.get("logger"))
    trainer = instantiate_trainer(cfg, callbacks, loggers)
    for lg in loggers:
        lg.log_hyperparams(
            {
                "cfg": OmegaConf.to_container(cfg, resolve=True),
                "params/total": sum(p.numel() for p in model.parameters()),
                "params/trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            }
        )

    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=False)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    wanted = cfg.get("optimized_metric")
    if wanted and wanted.startswith("val/") and wanted not in metrics and trainer.limit_val_batches:
        # the last epoch was no validation epoch (max_epochs not a multiple of check_val_every_n_epoch):
        # a sweeper must still get the final model's value
        trainer.validate(model, datamodule=datamodule, verbose=False)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    if cfg.get("test"):
        ckpt = "best" if OmegaConf.select(cfg, "callbacks.model_checkpoint.monitor") else None
        trainer.test(model, datamodule=datamodule, ckpt_path=ckpt, weights_only=False, verbose=False)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    return metrics


def _is_sigterm(err: BaseException) -> bool:
    """Lightning's SIGTERMException, told without importing Lightning for an error raised before it loaded."""
    module = sys.modules.get("lightning.pytorch.utilities.exceptions")
    return module is not None and isinstance(err, module.SIGTERMException)


@cli_errors
def run(cfg: DictConfig) -> float | None:
    try:
        metrics = train(cfg)
    except SystemExit as err:  # Lightning's SIGTERMException is a SystemExit
        if not _is_sigterm(err):
            raise
        # Lightning stops at the next step boundary with SystemExit(None), i.e. exit code 0: a scheduler
        # (SLURM preemption, a sweep) would take the unfinished run for a finished one
        last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
        hint = f"resume with ckpt_path={last}" if last.is_file() else "no checkpoint yet; start it again"
        print(f"error: stopped by SIGTERM before the run finished; {hint}", file=sys.stderr)
        raise SystemExit(128 + signal.SIGTERM) from None
    name = cfg.get("optimized_metric")
    if name and name not in metrics:
        # a finished run is never turned into a failure; a sweeper that needs the value fails on None itself
        log.warning(
            "optimized_metric=%s was not logged (no validation epoch ran?); logged: %s",
            name,
            ", ".join(k for k in sorted(metrics) if k.endswith("score")) or "none",
        )
    return metrics.get(name) if name else None


@checked_overrides
@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train.yaml")
def main(cfg: DictConfig) -> float | None:
    return run(cfg)


if __name__ == "__main__":
    main()
