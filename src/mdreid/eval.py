"""Evaluation entry point: ``python -m mdreid.eval experiment=NAME ckpt_path=PATH [eval.pairs=...]``.

The checkpoint defines the model: it is rebuilt from the checkpoint's saved hyper-parameters (or an official
``.pth``'s tensor shapes), identity and camera counts included, so evaluation needs no training split and a
command-line model value that contradicts the checkpoint is an error naming both. The data config only says
which images to score (at the checkpoint's input size) and under which junk rule.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from mdreid.config.cli_overrides import checked_overrides
from mdreid.config.location import config_dir
from mdreid.config.run import RunConfig
from mdreid.process.errors import cli_errors
from mdreid.process.output_dir import check_writable, keep_caches_in


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Score every configured modality pair; publish tables, metrics.json, metrics.csv and plots."""
    run = RunConfig.parse(cfg)
    check_writable(run.output_dir, "paths.output_dir")
    # imported here, not at the top, so that `--help` and Hydra's config errors need not load Lightning
    from mdreid.checkpoint import resolve_checkpoint
    from mdreid.data.data_config import DataConfig

    data = DataConfig.parse(cfg.data)  # a bad data key stops before the checkpoint is read

    # a bad path or an unsafe file fails before Lightning, the data or the model
    ckpt = resolve_checkpoint(run.ckpt_path, trust=run.trust_checkpoint)
    keep_caches_in(run.output_dir)
    import lightning as L

    from mdreid.config.hydra import command_line_overrides, instantiate_loggers, instantiate_trainer
    from mdreid.factory import adopt_checkpoint_images, build_datamodule, check_cameras, load_module
    from mdreid.metrics.eval_config import EvalConfig
    from mdreid.models.tower import check_tower_section
    from mdreid.reporting.protocol import PROTOCOL_KEY, describe, evaluation_record
    from mdreid.reporting.results_callback import PublishResults

    evaluation = EvalConfig.parse(cfg.eval)
    L.seed_everything(run.seed, workers=True)
    # an unknown or unimportable tower stops before the data is read
    check_tower_section(ckpt.architecture(data.image_size).backbone)
    # images resized to what the model was trained on, 16-bit / float images mapped as they were in training
    data = adopt_checkpoint_images(cfg, data, ckpt)
    datamodule = build_datamodule(data, validation=False)
    model = load_module(ckpt, image_size=data.image_size, evaluation=evaluation, junk=datamodule.junk_rule)
    check_cameras(model, datamodule, evaluation)
    trained = None if ckpt.official else ckpt.payload.get(PROTOCOL_KEY)
    protocol = evaluation_record(data.dataset, datamodule.benchmark, trained, command_line_overrides())
    protocol["selection"]["epoch"] = ckpt.epoch  # the weights evaluated are the checkpoint's
    print(describe(protocol), flush=True)
    publisher = PublishResults.from_config(
        run,
        data.dataset,
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
