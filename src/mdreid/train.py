"""Training entry point: ``python -m mdreid.train experiment=NAME [overrides]``.

``train(cfg)`` does the work and is what tests call through the compose API; ``main()`` is the thin Hydra
wrapper that returns the optimised metric for sweepers.
"""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig, OmegaConf

from mdreid.config.cli_overrides import checked_overrides
from mdreid.config.location import config_dir
from mdreid.config.run import RunConfig
from mdreid.process.errors import cli_errors
from mdreid.process.interrupts import last_checkpoint, stop_cleanly

log = logging.getLogger(__name__)


def train(cfg: DictConfig, run_cfg: RunConfig | None = None) -> dict[str, float]:
    """Fit, then (``test=true``) evaluate and publish metrics.json, metrics.csv and plots in the run directory.
    ``run_cfg``: the top-level keys, where the caller has read them already."""
    # imported here, not at the top: Lightning, W&B and the reporting stack take seconds to load, which
    # `--help`, Hydra's own config errors and a config that fails its checks should not wait for
    from mdreid.config.model import model_sections
    from mdreid.config.preflight import check_train_config
    from mdreid.data.data_config import DataConfig
    from mdreid.process.output_dir import keep_caches_in

    run_cfg = run_cfg if run_cfg is not None else RunConfig.parse(cfg)
    checked = check_train_config(cfg, run_cfg)
    data, sections = checked.data, checked.sections
    keep_caches_in(run_cfg.output_dir)
    import lightning as L

    from mdreid.checkpoint import resolve_checkpoint
    from mdreid.config.hydra import (
        command_line_overrides,
        instantiate_callbacks,
        instantiate_loggers,
        instantiate_trainer,
    )
    from mdreid.factory import (
        adopt_architecture,
        build_datamodule,
        build_module,
        check_cameras,
        check_resumable,
        load_module,
    )
    from mdreid.files.safe_load import checkpoint_globals
    from mdreid.lightning_plugins.wandb_logger import WandbLogger
    from mdreid.metrics.eval_config import EvalConfig
    from mdreid.reporting.protocol import protocol_record, warn_test_selection
    from mdreid.reporting.results_callback import PublishResults
    from mdreid.reporting.seed_groups import configuration_label

    evaluation = EvalConfig.parse(cfg.eval)
    warn_test_selection(data.val, run_cfg.monitors())
    trust = run_cfg.trust_checkpoint
    init = resolve_checkpoint(run_cfg.init_from, "init_from", trust) if run_cfg.init_from else None
    resume = resolve_checkpoint(run_cfg.ckpt_path, trust=trust) if run_cfg.ckpt_path else None
    if init is not None:
        # the network is the checkpoint's; the loss and schedule the run's: a new config, parsed once
        cfg = adopt_architecture(cfg, init)
        sections = model_sections(cfg.model)
        data = DataConfig.parse(cfg.data)
    L.seed_everything(run_cfg.seed, workers=True)
    datamodule = build_datamodule(data)
    model = build_module(cfg, datamodule, evaluation, sections)
    if init is not None:
        load_module(init, model, new_heads=True).train()  # a resume (ckpt_path) restores its own over these
    if resume is not None:
        check_resumable(resume, model)
    del init, resume  # Lightning reads ckpt_path itself
    check_cameras(model, datamodule, evaluation)  # validation and test
    protocol = protocol_record(
        run_cfg, data.dataset, datamodule.benchmark, data.val, command_line_overrides()
    )
    callbacks = instantiate_callbacks(run_cfg.callbacks)
    publisher = PublishResults.from_config(run_cfg, data.dataset, evaluation, protocol)
    callbacks.append(publisher)
    loggers = instantiate_loggers(run_cfg.logger)
    overrides = command_line_overrides()
    group = f"{data.dataset} | {configuration_label(dict(o.split('=', 1) for o in overrides if '=' in o))}"
    for lg in loggers:
        if isinstance(lg, WandbLogger):
            lg.group_by(group)
    # no validation split (data.val=none): no validation loop at all
    no_val = {} if datamodule.has_validation else {"limit_val_batches": 0, "num_sanity_val_steps": 0}
    trainer = instantiate_trainer(cfg, callbacks, loggers, **no_val)
    for lg in loggers:
        lg.log_hyperparams(
            {
                "cfg": OmegaConf.to_container(cfg, resolve=True),
                "protocol": protocol,
                "params/total": sum(p.numel() for p in model.parameters()),
                "params/trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            }
        )

    # Lightning reads ckpt_path again itself: as data too, unless the user vouched for the file
    with checkpoint_globals():
        trainer.fit(model, datamodule=datamodule, ckpt_path=run_cfg.ckpt_path, weights_only=not trust)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    wanted = run_cfg.optimized_metric
    # (under ddp_spawn the callbacks ran in the workers: the returned metrics are all there is to go by)
    validated = publisher.validated_epoch
    final = validated == trainer.current_epoch if validated is not None else wanted in metrics
    if wanted and wanted.startswith("val/") and not final and trainer.limit_val_batches:
        # the last epoch was no validation epoch (max_epochs not a multiple of check_val_every_n_epoch):
        # a sweeper must get the final model's value, not an earlier epoch's
        trainer.validate(model, datamodule=datamodule, verbose=False)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    monitor, _ = run_cfg.checkpoint_monitor()
    best = getattr(trainer.checkpoint_callback, "best_model_score", None)
    if monitor and monitor == wanted and best is not None:
        metrics[wanted] = float(best)  # the sweeper scores the weights that are reported: the best epoch's
    if run_cfg.test:
        ckpt = "best" if monitor else None
        with checkpoint_globals():  # the best checkpoint is this run's own file
            trainer.test(model, datamodule=datamodule, ckpt_path=ckpt, weights_only=True, verbose=False)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    return metrics


@cli_errors
def run(cfg: DictConfig) -> float | None:
    run_cfg = RunConfig.parse(cfg)
    with stop_cleanly(last_checkpoint(run_cfg.output_dir)):
        metrics = train(cfg, run_cfg)
    name = run_cfg.optimized_metric
    if name and name not in metrics:
        # a finished run is never turned into a failure; a sweeper that needs the value fails on None itself
        log.warning(
            "optimized_metric=%s was not logged (no validation epoch ran?); logged: %s",
            name,
            ", ".join(k for k in sorted(metrics) if k.endswith("score")) or "none",
        )
    return metrics.get(name) if name else None


@checked_overrides("train.yaml")
@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train.yaml")
def main(cfg: DictConfig) -> float | None:
    return run(cfg)


if __name__ == "__main__":
    main()
