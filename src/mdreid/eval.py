"""Evaluation entry point: ``python -m mdreid.eval experiment=NAME ckpt_path=PATH [eval.pairs=...]``.

The checkpoint defines the model: it is rebuilt from the checkpoint's saved hyper-parameters (or an official
``.pth``'s tensor shapes), identity and camera counts included, so evaluation needs no training split and a
command-line model value that contradicts the checkpoint is an error naming both. The data config only says
which images to score (at the checkpoint's input size) and under which junk rule.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, open_dict

from mdreid.process.errors import cli_errors
from mdreid.process.output_dir import check_writable, keep_caches_in
from mdreid.run_config import RunConfig
from mdreid.runtime.cli_overrides import checked_overrides
from mdreid.runtime.config import config_dir


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Score every configured modality pair; publish tables, metrics.json, metrics.csv and plots."""
    check_writable(cfg.paths.output_dir, "paths.output_dir")
    run = RunConfig.parse(cfg)
    # imported here, not at the top, so that `--help` and Hydra's config errors need not load Lightning
    from mdreid.checkpoints import resolve_checkpoint

    # a bad path or an unsafe file fails before Lightning, the data or the model
    ckpt = resolve_checkpoint(run.ckpt_path, trust=run.trust_checkpoint)
    keep_caches_in(cfg.paths.output_dir)
    import lightning as L

    from mdreid.config.hydra import command_line_overrides, instantiate_loggers, instantiate_trainer
    from mdreid.factory import (
        adopt_image_rule,
        architecture,
        build_datamodule,
        check_cameras,
        check_overrides,
        load_module,
        saved_hparams,
    )
    from mdreid.metrics.eval_config import EvalConfig
    from mdreid.models.tower import check_tower_section
    from mdreid.reporting.protocol import PROTOCOL_KEY, describe, evaluation_record
    from mdreid.reporting.results_callback import PublishResults

    evaluation = EvalConfig.parse(cfg.eval)
    L.seed_everything(cfg.seed, workers=True)
    arch = architecture(ckpt, cfg.data.image_size)
    check_tower_section(arch["backbone"])  # an unknown or unimportable tower stops before the data is read
    check_overrides(cfg, arch if ckpt.official else {**saved_hparams(ckpt), **arch}, ckpt.path, training=True)
    with open_dict(cfg):
        cfg.data.image_size = arch["image_size"]  # the images are resized to what the model was trained on
    adopt_image_rule(cfg, ckpt)  # and 16-bit / float images are mapped as they were in training
    datamodule = build_datamodule(cfg, validation=False)
    model = load_module(ckpt, image_size=arch["image_size"], evaluation=evaluation, junk=datamodule.junk_rule)
    check_cameras(model, datamodule, evaluation)
    trained = None if ckpt.official else ckpt.payload.get(PROTOCOL_KEY)
    protocol = evaluation_record(cfg.data.dataset, datamodule.benchmark, trained, command_line_overrides())
    protocol["selection"]["epoch"] = ckpt.epoch  # the weights evaluated are the checkpoint's
    print(describe(protocol), flush=True)
    publisher = PublishResults.from_config(
        cfg,
        evaluation,
        protocol=protocol,
        ckpt_path=str(run.ckpt_path),
        selection="checkpoint",
        epoch=ckpt.epoch,  # the checkpoint's, not this trainer's 0
        global_step=ckpt.global_step,
    )
    trainer = instantiate_trainer(cfg, [publisher], instantiate_loggers(run.logger))
    trainer.test(model, datamodule=datamodule, verbose=False)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


@checked_overrides("eval.yaml")
@hydra.main(version_base="1.3", config_path=config_dir(), config_name="eval.yaml")
@cli_errors
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
