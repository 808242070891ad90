"""Lightning's W&B logger, made to keep every file in the run folder and to print plain lines into a pipe."""

from __future__ import annotations

import atexit
import os
import sys
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment

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
