"""Where the Hydra configs live, so every ``python -m mdreid.<entry>`` finds them from any directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # src/mdreid (this file is in config/)


def config_dir() -> str:
    """The ``conf/`` folder: shipped inside the wheel as ``mdreid/conf``, or the repo's ``conf/`` (editable)."""
    for candidate in (_PACKAGE_DIR / "conf", _PACKAGE_DIR.parents[1] / "conf"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"mdreid configs not found next to {_PACKAGE_DIR}; reinstall with `make install`")


ASSETS_DIR = _PACKAGE_DIR / "assets"


def asset_path(name: str) -> str:
    """Absolute path of a file shipped in ``mdreid/assets`` (the proxy-foundation weights), from any cwd."""
    return str(ASSETS_DIR / name)


def selection_metric(val: Any) -> str | None:
    """The default metric a sweep optimises: ``val/score``, unless ``data.val`` is none (no validation split,
    so there is nothing to select on)."""
    return None if val is None or (isinstance(val, str) and val.lower() == "none") else "val/score"


# configs say ${mdreid.asset:FILE}; the loaders then see a plain path, as for any user-supplied file
OmegaConf.register_new_resolver("mdreid.asset", asset_path, replace=True)
OmegaConf.register_new_resolver("mdreid.selection_metric", selection_metric, replace=True)
