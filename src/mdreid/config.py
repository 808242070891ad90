"""Where the Hydra configs live, so every ``python -m mdreid.<entry>`` finds them from any directory."""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def config_dir() -> str:
    """The ``conf/`` folder: shipped inside the wheel as ``mdreid/conf``, or the repo's ``conf/`` (editable)."""
    for candidate in (_PACKAGE_DIR / "conf", _PACKAGE_DIR.parents[1] / "conf"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"mdreid configs not found next to {_PACKAGE_DIR}; reinstall with `make install`")
