"""What a run prints before its first useful line: the model summary, the W&B logger, third-party noise.

Each noisy line is fixed where it is produced when a setting allows it (the W&B ``anonymous`` argument, the
FLOPs column); the ones that no setting turns off are filtered here by their exact message, so every other
warning and log line still shows: Lightning's advert, its use of a deprecated torch class, and its report
that a CPU run has no GPU or TPU. Lightning's own console handler is dropped once the application has
configured logging (Hydra), so each Lightning line is printed once, in the application's format.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import ModelSummary
from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities.model_summary import get_formatted_model_size, get_human_readable_count

log = logging.getLogger(__name__)

# Lightning 2.6 builds torch's deprecated ``LeafSpec`` for every DataLoader it wraps (CombinedLoader)
PYTREE_DEPRECATION = "`isinstance(treespec, LeafSpec)` is deprecated"
PYTREE_MODULE = r"lightning\.pytorch\.utilities\._pytree"
# Lightning's info lines go through these loggers (rank_zero_info)
RANK_ZERO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")
# Lightning's adverts for its hosted services ("💡 Tip: ... litlogger / litmodels"), printed on every run
ADVERT_PREFIX = "💡 Tip:"
# what Lightning reports on every run without an accelerator; a GPU run still reports its GPU
NO_ACCELERATOR = frozenset({"GPU available: False, used: False", "TPU available: False, using: 0 TPU cores"})
# the packages Lightning gives a console handler of their own when they are imported
LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric")


class _DropKnownNoise(logging.Filter):
    """Drops Lightning's service adverts and its no-accelerator report; any other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        return not (message.startswith(ADVERT_PREFIX) or message in NO_ACCELERATOR)


def lightning_logs_to_root() -> None:
    """Remove the console handlers Lightning attaches on import, once the root logger has handlers.

    ``lightning`` attaches one whatever the root has, and ``lightning.pytorch`` / ``lightning.fabric`` (then
    not propagating) when the root had none at their import, as in a spawned worker. Either way a line would
    be printed by Lightning and again by the application's handlers, or only by Lightning, in its own format
    and never in the run's log file. Without root handlers (a notebook) Lightning's handlers stay.
    """
    if not logging.getLogger().handlers:
        return
    own = getattr(lightning, "_console", None)
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if handler is own or type(handler) is logging.StreamHandler:
                logger.removeHandler(handler)
        if not logger.handlers:  # a logger someone else gave handlers keeps its setting
            logger.propagate = True


class _ErrorsOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


def quiet_other_ranks() -> None:
    """In a process of global rank > 0 that runs the whole script itself (``trainer=ddp``, torchrun, SLURM
    tasks), the application's handlers print errors only: every rank would print the same lines and warnings
    again, and rank 0 prints them. Spawned workers are handled by ``mdreid.runtime.worker_logs`` instead."""
    if rank_zero_only.rank == 0:
        return
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _ErrorsOnly) for f in handler.filters):
            handler.addFilter(_ErrorsOnly())


def quiet_known_noise() -> None:
    """Silence the third-party lines no setting turns off, each matched by its own message, print every
    Lightning line once, and leave ranks > 0 their errors (idempotent; call it in every process that runs
    Lightning)."""
    warnings.filterwarnings(
        "ignore", message=re.escape(PYTREE_DEPRECATION), category=FutureWarning, module=PYTREE_MODULE
    )
    for name in RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropKnownNoise) for f in logger.filters):
            logger.addFilter(_DropKnownNoise())
    lightning_logs_to_root()
    quiet_other_ranks()


# Lightning is imported by now and its handlers attached: every entry point imports this module (through
# mdreid.runtime.hydra) before Lightning's first line, the "Seed set to" of seed_everything
quiet_known_noise()


# wandb's folders outside the run (artifact cache, staging, settings), which a run keeps in
# <save_dir>/wandb/<name> unless the user chose them before the process started
WANDB_HOME_VARS: dict[str, str] = {
    "WANDB_CACHE_DIR": "cache",
    "WANDB_DATA_DIR": "data",
    "WANDB_CONFIG_DIR": "config",
}
_USER_CHOSEN = frozenset(var for var in WANDB_HOME_VARS if var in os.environ)
# the user's own choice of how much W&B prints, which a piped run then leaves alone
WANDB_QUIET_VARS = ("WANDB_QUIET", "WANDB_SILENT")


class WandbLogger(LightningWandbLogger):
    """Lightning's W&B logger that writes nothing outside the run folder, and without ``anonymous=None`` in
    ``wandb.init`` (wandb no longer uses the setting and warns whenever it is passed at all, even as None)."""

    def __init__(self, *args: Any, save_dir: str = ".", **kwargs: Any) -> None:
        for var, name in WANDB_HOME_VARS.items():
            if var not in _USER_CHOSEN:  # set per run: a multirun's runs each get their own
                os.environ[var] = str(Path(save_dir).absolute() / "wandb" / name)
        super().__init__(*args, save_dir=save_dir, **kwargs)
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)
        # W&B prints its closing lines itself, coloured even into a file and outside the logging setup; a
        # piped run (SLURM, CI) keeps only its plain opening lines, which say where the run is saved
        plain = not sys.stderr.isatty() and not any(v in os.environ for v in WANDB_QUIET_VARS)
        if plain and "settings" not in self._wandb_init:
            import wandb

            self._wandb_init["settings"] = wandb.Settings(quiet=True)

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        import wandb

        started = self._experiment is None
        if started and wandb.run is not None:
            # an earlier job of this process (a multirun) left its run open: Lightning would log into it
            wandb.run.finish()
        run = LightningWandbLogger.experiment.fget.__wrapped__(self)  # type: ignore[attr-defined]
        if started:
            # finished before wandb's own exit hook, which prints its footer whatever the settings say
            atexit.register(run.finish)
        return run

    def group_by(self, name: str) -> None:
        """The W&B group of the run, unless the config named one (``logger.wandb.group``); set before the
        run starts, as ``wandb.init`` reads it once."""
        if self._wandb_init.get("group") is None:
            self._wandb_init["group"] = name


def summary_table(columns: list[tuple[str, list[str]]]) -> list[str]:
    """Left-aligned text table, one header line, a rule, one line per row."""
    widths = [max([len(name), *(len(v) for v in values)]) for name, values in columns]
    rows = zip(*(values for _, values in columns), strict=True)
    lines = [" | ".join(name.ljust(w) for (name, _), w in zip(columns, widths, strict=True)).rstrip()]
    lines.append("-" * len(lines[0]))
    lines += [" | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return lines


class ParamSummary(ModelSummary):
    """Lightning's model summary without its FLOPs column and total.

    Lightning counts FLOPs only by running ``example_input_array``, which ReIDModule does not set, so the
    column read 0 everywhere; ``scripts/bench_train.py`` measures the FLOPs of a training step. The table is
    logged as plain text, so it reads the same in a terminal, a SLURM log and the run's ``<task>.log``.
    """

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int = 0,
        **summarize_kwargs: Any,
    ) -> None:
        columns = [(name, [str(v) for v in values]) for name, values in summary_data if name != "FLOPs"]
        totals = [
            (get_human_readable_count(trainable_parameters), "trainable params"),
            (get_human_readable_count(total_parameters - trainable_parameters), "non-trainable params"),
            (get_human_readable_count(total_parameters), "total params"),
            (get_formatted_model_size(model_size), "estimated params size (MB)"),
            (str(total_training_modes["train"]), "modules in train mode"),
            (str(total_training_modes["eval"]), "modules in eval mode"),
        ]
        table = summary_table(columns)
        lines = [*table, *(f"{value:<10}{label}" for value, label in totals)]
        log.info("model summary\n%s", "\n".join(lines))
