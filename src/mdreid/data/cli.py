"""``python -m mdreid.data``: inspect a benchmark copy (stats), check that every image decodes and is what a
benchmark holds (verify), and write a synthetic copy with the real layout (synth)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import chain
from pathlib import Path
from typing import Any

from PIL import Image, ImageFile

from mdreid.config.cli_args import OneLineParser
from mdreid.data.bit_depth import RULE_MODES, BitDepthRule, is_high_bit
from mdreid.data.image_check import ImageInfo, depth_line, image_flags, read_info, summary_lines
from mdreid.data.readers import DATASETS, load_benchmark, reader, split_folders
from mdreid.data.readers.common import POLICIES
from mdreid.data.readers.manifest import write_manifest
from mdreid.data.readers.rgbnt100 import STITCHED_SIZE
from mdreid.data.records import Benchmark, Record
from mdreid.data.synthetic.generate import DEFAULT_COUPLING, PRESETS, generate
from mdreid.data.synthetic.unpaired import generate_unpaired
from mdreid.process.errors import cli_errors

ROLES = ("train", "query", "gallery")


def split_stats(records: Sequence[Record], with_scenes: bool) -> dict[str, int]:
    """Identities, triplets and cameras (and scenes) of one split."""
    stats = {
        "ids": len({r.pid for r in records}),
        "images": len(records),
        "cameras": len({r.camid for r in records}),
    }
    if with_scenes:
        stats["scenes"] = len({r.sceneid for r in records})
    return stats


def benchmark_stats(bench: Benchmark) -> dict[str, dict[str, int | str]]:
    """Per-role statistics plus the split folder each role was read from."""
    folders = split_folders(bench.name)
    with_scenes = bench.junk_rule == "scene"
    return {
        role: {**split_stats(getattr(bench, role), with_scenes), "folder": folders[role]} for role in ROLES
    }


def _print_table(title: str, stats: dict[str, dict[str, int | str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    columns = list(stats["train"])
    table = Table(title=title)
    table.add_column("split")
    for column in columns:
        table.add_column(column, justify="left" if column == "folder" else "right")
    for role, row in stats.items():
        table.add_row(role, *(f"{row[c]:,}" if isinstance(row[c], int) else str(row[c]) for c in columns))
    Console().print(table)


def _rule(args: argparse.Namespace) -> BitDepthRule:
    """The high-bit-depth rule of ``--high-bit-depth`` / ``--range`` (training's ``data.high_bit_depth``)."""
    return BitDepthRule.from_config({"mode": args.high_bit_depth, "range": args.range})


def _reader_args(text: str) -> dict[str, Any]:
    """``--reader-args``: a JSON object of a registered reader's keywords (``data.reader_args`` in training)."""
    try:
        value = json.loads(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not JSON ({err})") from err
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("give a JSON object, e.g. '{\"cameras\": 2}'")
    return value


def _load(args: argparse.Namespace) -> Benchmark:
    reader(args.dataset, args.reader_args, key="--dataset")  # an unknown reader names the option
    return load_benchmark(
        args.dataset,
        args.root,
        on_missing=args.on_missing,
        on_bad_name=args.on_bad_name,
        reader_args=args.reader_args,
    )


def _files(bench: Benchmark) -> dict[str, tuple[int, int] | None]:
    """Every image file of the benchmark once, with the size it must have (the stitched strips) or None."""
    records = chain(bench.train, bench.query, bench.gallery)
    return {p: (STITCHED_SIZE if r.stitched else None) for r in records for p in r.paths if p}


def _header_mode(path: str) -> str | None:
    """The Pillow mode from the file's header (no pixel decoding), None when it cannot be opened."""
    try:
        with Image.open(path) as img:
            return img.mode
    except Exception:  # noqa: BLE001 - whatever PIL raises; `verify` names the error
        return None


def _high_bit_state(path: str, rule: BitDepthRule) -> str | None:
    """``"unmappable"`` when a 16-bit or float file's samples are ones ``rule`` cannot map, ``"unreadable"``
    when they cannot be decoded, None when the rule maps them."""
    try:
        return None if read_info(path, rule).unmappable is None else "unmappable"
    except Exception:  # noqa: BLE001 - whatever PIL raises; `verify` names the error
        return "unreadable"


def cmd_stats(args: argparse.Namespace) -> int:
    """The counts, and how the files are read; exit 1 when a file cannot be opened or mapped (as verify)."""
    rule = _rule(args)
    bench = _load(args)
    stats: dict[str, dict[str, int | str]] = benchmark_stats(bench)
    files = sorted(_files(bench))
    modes = [_header_mode(p) for p in files]
    # only the 16-bit and float files are decoded: their samples decide whether the rule can map them
    states = [
        _high_bit_state(p, rule) if m and is_high_bit(m) else None for p, m in zip(files, modes, strict=True)
    ]
    readable = [m for m, state in zip(modes, states, strict=True) if m is not None and state != "unreadable"]
    unreadable = len(modes) - len(readable)
    unmappable = states.count("unmappable")
    status = 1 if unreadable or unmappable else 0
    if args.json:
        high = sum(is_high_bit(m) for m in readable)
        stats["files"] = {
            "8-bit": len(readable) - high,
            "16-bit or float": high - unmappable,
            "unmappable": unmappable,
            "unreadable": unreadable,
            "high_bit_depth": rule.describe(),
        }
        print(json.dumps(stats))
        return status
    _print_table(f"{bench.name} at {bench.root}", stats)
    print(depth_line(readable, rule, unmappable=unmappable))
    if unreadable or unmappable:
        print(f"{unreadable + unmappable} of {len(files)} files are bad: `verify` names them")
    return status


@contextmanager
def _strict_decoding() -> Iterator[None]:
    """Make PIL fail on truncated files even if another module relaxed it globally (the upstream loaders do)."""
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def check_image(
    path: str, expected_size: tuple[int, int] | None, rule: BitDepthRule | None = None
) -> tuple[ImageInfo | None, str | None]:
    """What ``path`` really is (None if undecodable) and why it is unusable (decode error, wrong size, or
    16-bit / float samples that ``rule`` cannot map: NaN, or outside its fixed range)."""
    try:
        info = read_info(path, rule)
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
        return None, f"{type(err).__name__}: {err}"
    if expected_size is not None and (info.width, info.height) != expected_size:
        return info, f"size {info.width}x{info.height}, expected {expected_size[0]}x{expected_size[1]}"
    return info, info.unmappable


def cmd_verify(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import track

    rule = _rule(args)
    bench = _load(args)
    files = _files(bench)
    own_data = bench.name == "manifest"
    base = os.path.dirname(bench.root) if own_data else args.root
    bad: list[tuple[str, str]] = []
    infos: list[ImageInfo] = []
    flagged: list[tuple[str, list[str]]] = []
    with _strict_decoding():
        for path in track(
            sorted(files), description="decoding", console=Console(stderr=True), transient=True
        ):
            info, problem = check_image(path, files[path], rule)
            if problem is not None:
                bad.append((path, problem))
            if info is not None:
                infos.append(info)
                if flags := image_flags(path, info, own_data):
                    flagged.append((os.path.relpath(path, base), flags))
    if bad:
        print(f"{len(bad)} of {len(files)} files are bad:")
        for path, problem in bad:
            print(f"  {path}: {problem}")
    for line in summary_lines(infos):
        print(line)
    if infos:
        unmappable = sum(i.unmappable is not None for i in infos)
        print(depth_line([i.mode for i in infos], rule, sum(i.constant for i in infos), unmappable))
    if flagged:
        print(f"{len(flagged)} of {len(files)} files are flagged:")
        for path, flags in flagged:
            print(f"  {path}: {'; '.join(flags)}")
    if bad or flagged:
        return 1
    print(f"all {len(files)} files decode and look like benchmark images")
    return 0


def cmd_to_manifest(args: argparse.Namespace) -> int:
    out = write_manifest(_load(args), args.out)
    print(f"wrote {out}: use it with data=manifest data.manifest={out}")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    options = {"ids": args.ids, "seed": args.seed, "preset": args.preset, "coupling": args.coupling}
    if args.like == "unpaired":
        print(generate_unpaired(Path(args.out) / "unpaired.csv", **options))
    else:
        print(generate(args.like, args.out, **options))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m mdreid.data", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true", help="show the traceback of an error")

    reading = argparse.ArgumentParser(add_help=False, parents=[common])
    reading.add_argument(
        "--dataset",
        required=True,
        help=f"{', '.join((*DATASETS, 'manifest'))}, or the name of a dataset reader of your own",
    )
    reading.add_argument(
        "--reader-args",
        type=_reader_args,
        default=None,
        help="a JSON object of keyword arguments for a reader of your own (data.reader_args in training)",
    )
    reading.add_argument(
        "--root",
        required=True,
        help="folder that contains RGBNT201/, RGBNT100/ or MSVR310/; the manifest file with --dataset manifest",
    )
    reading.add_argument(
        "--on-missing", choices=POLICIES, default="error", help="triplets lacking a modality file"
    )
    reading.add_argument(
        "--on-bad-name", choices=POLICIES, default="error", help=".jpg files breaking the name rule"
    )

    depth = argparse.ArgumentParser(add_help=False)
    depth.add_argument(
        "--high-bit-depth",
        choices=RULE_MODES,
        default="stretch",
        help="how 16-bit and float images map to 0..255, as data.high_bit_depth.mode in training",
    )
    depth.add_argument(
        "--range",
        nargs=2,
        type=float,
        metavar=("LO", "HI"),
        help="the sample values that map to 0 and 255 with --high-bit-depth range",
    )

    stats = commands.add_parser(
        "stats",
        parents=[reading, depth],
        help="ids, images, cameras (scenes) per split, and how many files the high-bit-depth rule maps; "
        "exit 1 if any cannot be opened or mapped",
    )
    stats.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    stats.set_defaults(run=cmd_stats)

    verify = commands.add_parser(
        "verify",
        parents=[reading, depth],
        help="decode every image, report its real format; exit 1 if any is bad or flagged",
    )
    verify.set_defaults(run=cmd_verify)

    to_manifest = commands.add_parser(
        "to-manifest", parents=[reading], help="write a dataset as a manifest (.csv or .jsonl)"
    )
    to_manifest.add_argument("--out", required=True, help="the manifest file to write")
    to_manifest.set_defaults(run=cmd_to_manifest)

    synth = commands.add_parser(
        "synth", parents=[common], help="write a small synthetic copy with the real layout"
    )
    synth.add_argument(
        "--like",
        required=True,
        choices=(*DATASETS, "unpaired"),
        help="a benchmark layout, or unpaired: a manifest (unpaired.csv) whose samples keep 1-3 modalities",
    )
    synth.add_argument("--out", required=True, help="folder to write the benchmark folder into")
    synth.add_argument(
        "--ids", type=int, default=None, help="number of identities (the preset decides if unset)"
    )
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--preset", choices=PRESETS, default="tiny")
    synth.add_argument(
        "--coupling",
        type=float,
        default=DEFAULT_COUPLING,
        help="share of materials whose NIR/TIR look follows RGB: 0 = independent modalities",
    )
    synth.set_defaults(run=cmd_synth)
    return parser


@cli_errors
def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the subcommand; returns the exit code (MDReIDError -> one line, exit 2)."""
    args = build_parser().parse_args(argv)
    if args.verbose:
        os.environ["MDREID_VERBOSE"] = "1"  # read by cli_errors: re-raise with the traceback
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s", stream=sys.stderr)
    return args.run(args)
