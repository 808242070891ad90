"""The officially released MDReID checkpoints (docs/official_checkpoints.md).

Evaluation and export read an official ``.pth`` directly, no flag needed::

    python -m mdreid.eval experiment=rgbnt201 ckpt_path=/weights/MDReID_RGBNT201.pth data.root=/datasets
    python -m mdreid.export ckpt_path=/weights/MDReID_RGBNT201.pth

From Python, ``load_official_checkpoint(path)`` gives the ``ReIDModule``. To fine-tune from one, or to keep
an mdreid checkpoint of it, convert it once::

    python -m mdreid.official convert IN.pth OUT.ckpt --experiment rgbnt201 [HYDRA_OVERRIDES...]
    python -m mdreid.train experiment=rgbnt201 init_from=OUT.ckpt ...
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import shlex
from collections.abc import Sequence
from pathlib import Path

import lightning
import torch
from hydra.errors import HydraException
from hydra.utils import instantiate
from omegaconf import open_dict

from mdreid.data.readers import junk_rule
from mdreid.models.official_layout import RELEASES, Converted, describe_mismatch, resolve_image_size
from mdreid.module import ReIDModule
from mdreid.runtime.atomic_io import atomic_write
from mdreid.runtime.builders import load_official, official_module, read_official
from mdreid.runtime.checkpoints import resolve_checkpoint
from mdreid.runtime.errors import MDReIDError, cli_errors
from mdreid.runtime.hydra import compose_config

log = logging.getLogger(__name__)

__all__ = ["convert", "load_official_checkpoint"]


def _read(path: str | Path, trust: bool = False) -> Converted:
    ckpt = resolve_checkpoint(path, trust=trust)
    if not ckpt.official:
        raise MDReIDError(f"{path} is already an mdreid checkpoint; use it as is (ckpt_path= or init_from=)")
    return read_official(ckpt)


def load_official_checkpoint(
    path: str | Path, image_size: Sequence[int] | None = None, trust: bool = False
) -> ReIDModule:
    """The ``ReIDModule`` of an official MDReID ``.pth``, in eval mode.

    Identities, cameras and the tower's sizes come from the tensors; the input size (H, W) from the benchmark
    those identify, or ``image_size`` for a model trained elsewhere. ``net.extract`` then gives the official
    model's per-modality specific and shared features. The file is read as data, never run as code, unless
    ``trust`` says its source is trusted.
    """
    converted = _read(path, trust)
    model = official_module(converted, image_size, str(path))
    load_official(model, converted, str(path))
    return model.eval()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert(
    src: str | Path, dst: str | Path, experiment: str, overrides: Sequence[str] = (), trust: bool = False
) -> Path:
    """Write the official checkpoint ``src`` as an mdreid checkpoint ``dst`` with ``experiment``'s model
    config (loss, optimiser, schedule: what a fine-tuning run from it would use). The output holds tensors
    and plain values only, so it loads without trusting anything."""
    src, dst = Path(src), Path(dst)
    converted = _read(src, trust)
    try:
        cfg = compose_config("train", [f"experiment={experiment}", *overrides])
    except HydraException as err:
        raise MDReIDError(
            f"--experiment {experiment} {' '.join(overrides)}: {err}".replace("\n", " ")
        ) from err
    layout = converted.layout
    release = RELEASES.get(str(cfg.data.dataset)) if cfg.data.get("synth") is None else None
    if release is not None:
        contradiction = describe_mismatch(
            layout, release.num_classes, release.num_cameras, layout.grid_tokens
        )
        if contradiction:
            raise MDReIDError(f"{src} does not fit experiment={experiment}: {contradiction}")
    with open_dict(cfg):
        cfg.model.backbone.weights = None  # every weight comes from the checkpoint
    model = instantiate(
        cfg.model,
        num_classes=layout.num_classes,
        num_cameras=layout.num_cameras,
        image_size=list(resolve_image_size(layout, cfg.data.image_size, str(src))),
        junk=junk_rule(str(cfg.data.dataset)),
        evaluation=cfg.get("eval"),
        _convert_="all",
    )
    load_official(model, converted, str(src))
    payload = {
        "state_dict": model.state_dict(),
        ReIDModule.CHECKPOINT_HYPER_PARAMS_KEY: dict(model.hparams),  # a plain dict, not Lightning's type
        "pytorch-lightning_version": lightning.__version__,
        "epoch": 0,
        "global_step": 0,
        "converted_from": {
            "file": str(src.resolve()),
            "sha256": _sha256(src),
            "experiment": experiment,
            "overrides": list(overrides),
            "dropped": list(converted.unused),
        },
    }
    atomic_write(dst, lambda fh: torch.save(payload, fh))
    return dst


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mdreid.official", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    conv = commands.add_parser("convert", help="write an official .pth as an mdreid checkpoint")
    conv.add_argument("src", type=Path, help="official MDReID .pth")
    conv.add_argument("dst", type=Path, help="mdreid checkpoint to write (.ckpt)")
    conv.add_argument(
        "--experiment", required=True, help="experiment config, e.g. rgbnt201, rgbnt100, msvr310"
    )
    conv.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="load SRC as pickle, code included (only for a file whose source you trust)",
    )
    conv.add_argument(
        "overrides", nargs="*", help="Hydra overrides of that experiment, e.g. model.mdl.tie_tokens=false"
    )
    # overrides may stand before or after the options: what argparse leaves over after the options are
    # the overrides that followed them
    args, rest = parser.parse_known_args(argv)
    bad = [word for word in rest if word.startswith("-") or "=" not in word]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)} (overrides look like key=value)")
    args.overrides = [*args.overrides, *rest]
    return args


@cli_errors
def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    out = convert(args.src, args.dst, args.experiment, args.overrides, args.trust_checkpoint)
    words = [
        "python",
        "-m",
        "mdreid.eval",
        f"experiment={args.experiment}",
        *args.overrides,
        f"ckpt_path={out}",
    ]
    print(f"wrote {out}: evaluate with `{shlex.join(words)}`")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
