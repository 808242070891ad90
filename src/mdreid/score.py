"""Scoring saved features: ``python -m mdreid.score FILE [eval.similarity=common] [eval.pairs=...]``.

FILE is a feature file (docs/feature_files.md) from ``mdreid.eval eval.save_features=true`` or from any other
method. It is scored by the metric mdreid.eval uses, built from the same ``eval`` config section, and
published the same way: the 7x7 tables, the named settings, metrics.json / metrics.csv and the plots (all but
the ranked lists, which need the images), in the run folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from mdreid.config.cli_overrides import checked_overrides
from mdreid.config.location import config_dir
from mdreid.config.run import RunConfig
from mdreid.process.errors import MDReIDError, cli_errors
from mdreid.process.output_dir import check_writable, keep_caches_in


def score(cfg: DictConfig) -> dict[str, float]:
    """Score ``cfg.file`` with the ``eval`` section's metric; publish like eval. Returns the test scalars."""
    if OmegaConf.is_missing(cfg, "file"):
        raise MDReIDError("no feature file given: python -m mdreid.score FILE [overrides] (or file=PATH)")
    run = RunConfig.parse(cfg)
    out_dir = check_writable(run.output_dir, "paths.output_dir")
    keep_caches_in(out_dir)
    # imported here, not at the top, so that `--help` and Hydra's config errors need not load torch
    from mdreid.config.hydra import configure_threads
    from mdreid.feature_file import read_feature_file
    from mdreid.metrics.eval_config import EvalConfig
    from mdreid.reporting.reports import publish

    evaluation = EvalConfig.parse(cfg.eval)
    if evaluation.save_features:
        raise MDReIDError("eval.save_features=true: score reads saved features and writes none; drop it")
    configure_threads(cfg)
    features = read_feature_file(run.file)
    metric = evaluation.build_metric(junk=features.junk)
    metric.update(**features.metric_inputs())
    try:
        scored = metric.evaluate()
    except MDReIDError as err:  # what the features cannot give (pairs of absent modalities): name the file
        raise MDReIDError(f"{run.file}: {err}") from err
    header = {
        "task_name": run.task_name,
        "file": str(Path(str(run.file)).expanduser().absolute()),
        "dataset": features.dataset,
        "method": features.method,
        "source": features.provenance,
    }
    publish(scored.result, out_dir, header, samples=scored.samples if evaluation.plots else None)
    return scored.result.scalars("test")


@checked_overrides("score.yaml")
@hydra.main(version_base="1.3", config_path=config_dir(), config_name="score.yaml")
@cli_errors
def _main(cfg: DictConfig) -> None:
    score(cfg)


def file_argument(args: list[str]) -> list[str]:
    """The command line with a leading ``FILE`` turned into the override ``file='FILE'`` (quoted, so spaces,
    commas and brackets in the path survive Hydra's override grammar); other arguments are kept as they are."""
    if not args or args[0].startswith(("-", "+", "~")) or ("=" in args[0] and not Path(args[0]).exists()):
        return args
    return [f"file='{args[0].replace(chr(39), chr(92) + chr(39))}'", *args[1:]]


def main() -> None:
    sys.argv[1:] = file_argument(sys.argv[1:])
    _main()


if __name__ == "__main__":
    main()
