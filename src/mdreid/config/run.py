"""``RunConfig``: the top-level keys of an entry point's config (train, eval, export, score, pretrain, the
official converter), read once where the run starts.

Each primary config (conf/<entry>.yaml) has the keys its entry point uses, and Hydra refuses any other on the
command line; a key a config lacks (``init_from`` in eval.yaml) takes the default here. The sections
(``data``, ``model``, ``eval``, ``trainer``, ...) have their own readers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from mdreid.config.sections import plain, typed_view
from mdreid.process.errors import MDReIDError


@dataclass(frozen=True)
class RunConfig:
    """What conf/train.yaml and its siblings say at the top level about where a run starts and ends."""

    # a run's own checkpoint: resumed (train, pretrain) or evaluated / exported (eval, export)
    ckpt_path: str | None = None
    # fine-tuning: a new run starts from these weights (train)
    init_from: str | None = None
    # load checkpoints as pickle, code included (only for a file whose source is trusted)
    trust_checkpoint: bool = False
    # a run folder that holds a finished run's results may be reused, replacing them
    overwrite: bool = False
    # evaluate on the test split after training (train)
    test: bool = False
    # the metric main() returns to a sweeper (train)
    optimized_metric: str | None = None
    # the configuration a multirun's best one is compared with (train)
    sweep_reference: str | None = None
    # [H, W] for an official file trained on other data (export)
    image_size: list[int] | None = None
    # the file written (export, pretrain)
    out: str | None = None
    # Hydra ``_target_`` nodes: Lightning callbacks and loggers, None for none
    callbacks: Mapping[str, Any] | None = None
    logger: Mapping[str, Any] | None = None
    # the run folders; None for a config built in code that names none (export)
    paths: Mapping[str, Any] | None = None
    # seeds the run (None: the config sets none)
    seed: int | None = None
    # the run's name in its folder and in metrics.json
    task_name: str | None = None
    # the feature file scored (score)
    file: str | None = None
    # export: the file format, its ONNX opset, rows of the example batch, float16, the parity check (a config
    # built in code without them gets neither float16 nor a parity report)
    format: str | None = None
    opset: int = 18
    batch_size: int = 2
    fp16: bool = False
    parity: bool = False

    @classmethod
    def parse(cls, cfg: Mapping[str, Any]) -> RunConfig:
        """The top-level keys of ``cfg`` (an entry point's whole config), checked."""
        run = typed_view(cls, cfg, "")
        return run if run.image_size is None else replace(run, image_size=list(plain(run.image_size)))

    @property
    def output_dir(self) -> str:
        """``paths.output_dir``: the run folder."""
        if self.paths is None:
            raise MDReIDError("paths.output_dir is not set; compose the config with its paths group")
        return str(self.paths["output_dir"])

    def monitors(self) -> dict[str, str]:
        """Every metric the run selects on, by the key that names it: ``optimized_metric`` (a sweep's winner)
        and each callback's ``monitor`` (the reported checkpoint, early stopping)."""
        found = {"optimized_metric": self.optimized_metric} if self.optimized_metric else {}
        for name, node in (self.callbacks or {}).items():
            if isinstance(node, Mapping) and node.get("monitor"):
                found[f"callbacks.{name}.monitor"] = str(node["monitor"])
        return found

    def checkpoint_monitor(self) -> tuple[str | None, str]:
        """``(metric, mode)`` the checkpoint callback keeps the best weights by; metric None: the last epoch's."""
        node = (self.callbacks or {}).get("model_checkpoint") or {}
        if not isinstance(node, Mapping):
            return None, "min"
        return node.get("monitor") or None, str(node.get("mode", "min"))
