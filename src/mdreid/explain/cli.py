"""``python -m mdreid.explain``: Grad-CAM overlays per modality and the drop-one shares of one match.

    python -m mdreid.explain --ckpt CKPT --out why/ --query-rgb q.jpg --query-tir qt.jpg --query-camid 0 \\
        --gallery-rgb g.jpg --gallery-nir gn.jpg --gallery-tir gt.jpg --gallery-camid 2
    python -m mdreid.explain --ckpt CKPT --out why/ --manifest rows.csv --query-row 0 --gallery-row 5
    python -m mdreid.explain --ckpt CKPT --out why/ --manifest rows.csv --query-row 0 --identity 3

A match is compared on the modalities each side has (``--query-modalities`` / ``--gallery-modalities``
narrow them) under ``--similarity`` (the index's rule); ``--identity LABEL`` explains a training class's logit
instead. Writes ``query_<M>.png`` / ``gallery_<M>.png`` (map over the model-sized image) and
``explanation.json`` (score, shares, files) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from mdreid.process.errors import MDReIDError, cli_errors

SIDES = ("query", "gallery")
FILES = (("rgb", "RGB"), ("nir", "near-infrared"), ("tir", "thermal"))


def _subset(record, narrow: str | None, side: str) -> str:
    from mdreid.modalities import LETTERS, subset_indices

    have = "".join(c for c, p in zip(LETTERS, record.present, strict=True) if p)
    if narrow is None:
        return have
    try:
        wanted = "".join(LETTERS[m] for m in subset_indices(narrow))
    except ValueError as err:
        raise MDReIDError(f"--{side}-modalities: {err}") from err
    if not set(wanted) <= set(have):
        raise MDReIDError(f"--{side}-modalities={narrow}: the {side} has only {have}")
    return wanted


def _record(args: argparse.Namespace, side: str):
    """The side's record: a manifest row (``--<side>-row``) or image files (``--<side>-rgb`` ...)."""
    from mdreid.data.records import Record

    row = getattr(args, f"{side}_row")
    files = [getattr(args, f"{side}_{m}") for m, _ in FILES]
    if row is not None and any(files):
        raise MDReIDError(f"name the {side} by --{side}-row or by image files, not both")
    if row is not None:
        if not args.manifest:
            raise MDReIDError(f"--{side}-row needs --manifest")
        from mdreid.data.readers.manifest import read_manifest

        rows = read_manifest(args.manifest)
        if not 0 <= row < len(rows):
            raise MDReIDError(f"--{side}-row={row}: {args.manifest} has rows 0..{len(rows) - 1}")
        r = rows[row]
        return Record(r.paths, r.pid, r.camid, r.sceneid, stitched=r.stitched)
    if not any(files):
        return None
    camid = getattr(args, f"{side}_camid")
    if camid is None:
        raise MDReIDError(f"give the {side}'s camera id with --{side}-camid (the model embeds the camera)")
    for f in files:
        if f and not Path(f).is_file():
            raise MDReIDError(f"{f}: no such image file")
    return Record(tuple(str(Path(f).absolute()) if f else "" for f in files), pid=-1, camid=camid)


def run(args: argparse.Namespace) -> dict:
    from mdreid.explain.explainer import Explainer
    from mdreid.factory import load_module
    from mdreid.files.atomic_io import atomic_write, atomic_write_text
    from mdreid.index.extract import pick_device

    query, gallery = _record(args, "query"), _record(args, "gallery")
    if query is None:
        raise MDReIDError(
            "name the query: --query-rgb/--query-nir/--query-tir with --query-camid, or --query-row"
        )
    if (gallery is None) == (args.identity is None):
        raise MDReIDError(
            "explain a match (name a gallery item) or an identity (--identity LABEL), one of them"
        )
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise MDReIDError(f"--out {out} is not empty; choose a new folder (nothing is overwritten)")
    explainer = Explainer(load_module(args.ckpt), args.similarity, pick_device(args.device))
    q_subset = _subset(query, args.query_modalities, "query")
    report: dict = {"checkpoint": str(args.ckpt), "feature": args.feature, "query_files": list(query.paths)}
    if gallery is None:
        cams = {"query": explainer.identity(query, q_subset, args.identity, args.feature)}
        report.update(target="identity", identity=args.identity, subset=q_subset)
    else:
        pair = (q_subset, _subset(gallery, args.gallery_modalities, "gallery"))
        found = explainer.match(query, gallery, pair, args.feature)
        cams = {"query": found.query, "gallery": found.gallery}
        report.update(
            target="similarity",
            similarity=args.similarity,
            pair=f"{pair[0]}->{pair[1]}",
            gallery_files=list(gallery.paths),
            score=found.shares.score,
            shares={"query": found.shares.query, "gallery": found.shares.gallery},
        )
    for side, maps in cams.items():
        for letter, cam in maps.items():
            image = cam.overlay
            atomic_write(out / f"{side}_{letter}.png", lambda f, im=image: im.save(f, format="PNG"))
    atomic_write_text(out / "explanation.json", json.dumps(report, indent=2) + "\n")
    return report


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mdreid.explain", description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True, help="a checkpoint of mdreid.train (or an official .pth)")
    p.add_argument("--out", required=True, help="a new folder for the overlays and explanation.json")
    p.add_argument("--manifest", help="a manifest (docs/manifest.md) for --query-row / --gallery-row")
    for side in SIDES:
        p.add_argument(f"--{side}-row", type=int, help=f"the {side}: a manifest row (0 = first)")
        for m, name in FILES:
            p.add_argument(f"--{side}-{m}", help=f"the {side}'s {name} image")
        p.add_argument(f"--{side}-camid", type=int, help=f"the {side} camera's id (with image files)")
        p.add_argument(f"--{side}-modalities", help=f"compare only these {side} modalities, e.g. RT")
    p.add_argument("--identity", type=int, help="explain this training class's logit (no gallery item)")
    p.add_argument("--feature", choices=("sh", "sp"), default="sh", help="shared or specific feature")
    p.add_argument("--similarity", choices=("code", "paper"), default="code", help="the index's rule")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda:0, ...")
    return p


@cli_errors
def main(argv: Sequence[str] | None = None) -> int:
    report = run(parser().parse_args(argv))
    print(json.dumps({k: v for k, v in report.items() if k in ("target", "pair", "score", "shares")}))
    return 0
