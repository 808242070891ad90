"""What a run prints before its first useful line: no third-party noise, Lightning's lines in our format.

Each noisy line is fixed where it is produced when a setting allows it (the W&B ``anonymous`` argument, the
FLOPs column); the ones that no setting turns off are filtered here by their exact message, so every other
warning and log line still shows: Lightning's advert, its use of a deprecated torch class, and its report
that a CPU run has no GPU or TPU. Lightning's own console handler is dropped once the application has
configured logging (Hydra), so each Lightning line is printed once, in the application's format.
"""

from __future__ import annotations

import logging
import re
import warnings

import lightning
from lightning.fabric.utilities.rank_zero import rank_zero_only

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
    again, and rank 0 prints them. Spawned workers are handled by ``mdreid.process.worker_logs`` instead."""
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
# mdreid.config.hydra) before Lightning's first line, the "Seed set to" of seed_everything
quiet_known_noise()
