"""``python -m mdreid.official convert IN.pth OUT.ckpt --experiment NAME [--trust-checkpoint] [OVERRIDES...]``."""

from __future__ import annotations

import argparse
import logging
import shlex
from collections.abc import Sequence
from pathlib import Path

from mdreid.config.cli_args import OneLineParser
from mdreid.official.convert import convert
from mdreid.process.errors import cli_errors


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = OneLineParser(
        prog="python -m mdreid.official", description="The officially released MDReID checkpoints."
    )
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
    if any(o.lstrip("+~").split("=", 1)[0] == "trust_checkpoint" for o in args.overrides):
        parser.error(
            "trust_checkpoint is no override of the converter; vouch for SRC with --trust-checkpoint"
        )
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
