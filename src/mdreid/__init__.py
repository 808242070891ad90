"""mdreid: any-to-any multi-modal object re-identification (MDReID, NeurIPS 2025).

The public API, loaded on first use so that ``python -m mdreid.<entry> --help`` stays fast::

    from mdreid import ReIDModule, AnyToAnyReID, any_to_any_reid, compose_config, train_model, evaluate
    from mdreid import DataConfig, build_datamodule, build_module, load_module, load_official_checkpoint, plots
    from mdreid import Embedder, Embeddings  # a trained model on your own images (docs/deploy.md)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "ReIDModule": "mdreid.module",
    "MultiModalReIDDataModule": "mdreid.data.datamodule",
    "DataConfig": "mdreid.data.data_config",
    "AnyToAnyReID": "mdreid.metrics.any_to_any",
    "AnyToAnyResult": "mdreid.metrics.results",
    "any_to_any_reid": "mdreid.metrics.any_to_any_functional",
    "compose_config": "mdreid.config.hydra",
    "build_datamodule": "mdreid.factory",
    "build_module": "mdreid.factory",
    "load_module": "mdreid.factory",
    "resolve_checkpoint": "mdreid.checkpoint",
    "load_official_checkpoint": "mdreid.official.reader",
    "MDReIDError": "mdreid.process.errors",
    "instantiate_trainer": "mdreid.config.hydra",
    "train_model": "mdreid.train",
    "evaluate": "mdreid.eval",
    "MODALITIES": "mdreid.modalities",
    "load_benchmark": "mdreid.data.readers",
    "read_modalities": "mdreid.data.triplet_dataset",
    "generate_synthetic": "mdreid.data.synthetic.generate",
    "print_result": "mdreid.reporting.reports",
    "Embedder": "mdreid.embed.embedder",
    "Embeddings": "mdreid.embed.embeddings",
}
# public name -> a module exposed whole
_MODULES: dict[str, str] = {"plots": "mdreid.reporting.plots"}

# where a public name differs from the one in its module
# (``train`` is also the name of the entry-point module, which would shadow the function once imported)
_RENAMED: dict[str, str] = {"generate_synthetic": "generate", "train_model": "train"}

__all__ = sorted([*_EXPORTS, *_MODULES])


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(_MODULES[name])
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mdreid' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), _RENAMED.get(name, name))


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
