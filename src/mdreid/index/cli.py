"""``python -m mdreid.index``: build a gallery index from a trained checkpoint or a feature file, add to it,
search it.

    python -m mdreid.index build INDEX --ckpt CKPT [--role gallery] experiment=rgbnt201 data.root=/datasets
    python -m mdreid.index build INDEX --ckpt CKPT --manifest gallery.csv
    python -m mdreid.index build INDEX --features gallery.safetensors    # any method's (docs/feature_files.md)
    python -m mdreid.index add INDEX --manifest new_items.csv
    python -m mdreid.index search INDEX --tir night.jpg --camid 2 --gallery-modalities R --top-k 10 --out hits/
    python -m mdreid.index build INDEX --features gallery.safetensors --kind ivf --pairs "T->R"  # large
    python -m mdreid.index search INDEX --manifest queries.csv --kind ivf --nprobe 8
    python -m mdreid.index search INDEX --features queries.safetensors  # an index built from a feature file

The index records the model that made its features (``index.identity``); ``add`` and ``search`` refuse a
checkpoint file that has changed since, or a feature file of another producer or feature size.

A dataset is named by the Hydra overrides of ``mdreid.eval`` (its query or gallery split, ``--role``); a
manifest (docs/manifest.md) by its file, all of its rows unless ``--splits`` picks some. Search writes
``results.json`` and ``ranked_list.png`` to ``--out`` (default: print the JSON).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from mdreid.config.cli_args import OneLineParser
from mdreid.index.kinds import IVF_CELL_SIZE, IVF_NPROBE, KINDS
from mdreid.process.errors import MDReIDError, cli_errors

ROLES = ("gallery", "query", "all")


def _records(args: argparse.Namespace) -> list:
    """The records an invocation names: manifest rows, a dataset split, or image files (search only)."""
    from mdreid.data.readers.manifest import read_manifest
    from mdreid.data.records import Record

    if getattr(args, "manifest", None):
        splits = set(args.splits.split(",")) if args.splits else None
        rows = [r for r in read_manifest(args.manifest) if splits is None or r.split in splits]
        if not rows:
            raise MDReIDError(f"{args.manifest}: no row with split in {sorted(splits or [])}; check --splits")
        return [
            Record(r.paths, r.pid, r.camid, r.sceneid, index=i, stitched=r.stitched)
            for i, r in enumerate(rows)
        ]
    files = [getattr(args, m, None) for m in ("rgb", "nir", "tir")]
    if any(files):
        if args.camid is None:
            raise MDReIDError("search: give the query's camera id with --camid (the model embeds the camera)")
        paths = tuple(str(Path(f).absolute()) if f else "" for f in files)
        return [Record(paths, pid=-1, camid=args.camid, split="query")]
    if not args.overrides:
        raise MDReIDError(
            "name the images: Hydra overrides of a dataset (experiment=...), --manifest FILE, or files"
        )
    from mdreid.config.hydra import compose_config
    from mdreid.data.data_config import DataConfig
    from mdreid.factory import build_datamodule

    data = DataConfig.parse(compose_config("eval", _dataset_overrides(args)).data)
    bench = build_datamodule(data, validation=False).benchmark
    role = getattr(args, "role", "gallery")
    if role == "all" and not bench.query_is_gallery:
        return list(bench.query) + list(bench.gallery)
    return list(bench.gallery if role in ("gallery", "all") else bench.query)


def _dataset_overrides(args: argparse.Namespace) -> list[str]:
    """The overrides of ``mdreid.eval`` that name the dataset; the model is the index's, not the config's."""
    return [*args.overrides, "ckpt_path=unused"]


def _extract(args: argparse.Namespace, model, records: list):
    from mdreid.index.extract import extract_items, pick_device

    return extract_items(model, records, args.batch_size, pick_device(args.device))


def _model(ckpt: str):
    from mdreid.factory import load_module

    return load_module(ckpt)


def _feature_rows(path: str, role: str):
    """The rows of a feature file with ``role`` (gallery, query or all) as items, and the file's record."""
    import torch

    from mdreid.feature_file import read_feature_file
    from mdreid.index.identity import features_identity
    from mdreid.index.store import GalleryItems

    fs = read_feature_file(path)
    keep = {"gallery": fs.is_gallery, "query": fs.is_query, "all": torch.ones_like(fs.is_query)}[role]
    if not bool(keep.any()):
        raise MDReIDError(f"{path}: no row is marked {role} (is_{role}); choose the rows with --role")
    inputs = fs.metric_inputs()
    cut = lambda x: None if x is None else x[keep]  # noqa: E731
    n = int(keep.sum())
    items = GalleryItems(
        *(cut(inputs[k]) for k in ("sp", "sh", "present", "pid", "camid", "sceneid")),
        paths=[("", "", "")] * n,  # a feature file names no images
        stitched=[False] * n,
    )
    return items, features_identity(path, fs, fs.features.shape[-1])


def _new_items(args: argparse.Namespace, store, role: str):
    """The items an ``add`` or ``search`` names, made by the index's own model (checked first)."""
    from mdreid.index.identity import verify_checkpoint, verify_features

    if args.features:
        items, record = _feature_rows(args.features, role)
        verify_features(store.info["model"], store.root, args.features, record)
        return items
    return _extract(args, _model(verify_checkpoint(store.info["model"], store.root)), _records(args))


def cmd_build(args: argparse.Namespace) -> None:
    from mdreid.index.identity import checkpoint_identity
    from mdreid.index.search import pair_index
    from mdreid.index.store import GalleryStore, feature_dim

    if args.features:
        if args.manifest or args.overrides:
            raise MDReIDError(
                "build --features FILE takes its rows from the file: drop --manifest and overrides"
            )
        items, identity = _feature_rows(args.features, args.role)
        image_size = None
    else:
        from mdreid.checkpoint import resolve_checkpoint

        ckpt = str(resolve_checkpoint(args.ckpt).path)
        model = _model(ckpt)
        items = _extract(args, model, _records(args))
        identity = checkpoint_identity(ckpt, model, feature_dim(items))
        image_size = list(model.hparams["image_size"])
    settings = {
        "model": identity,
        "similarity": args.similarity,
        "image_size": image_size,
        "command": shlex.join(["python", "-m", "mdreid.index", *args.argv]),
    }
    store = GalleryStore.create(args.index, items, settings)
    for pair in args.pairs or []:
        q_subset, g_subset = pair.split("->")
        pair_index(store, q_subset, g_subset, args.kind, args.nlist)
    print(f"{args.index}: {store.size} items indexed")


def cmd_add(args: argparse.Namespace) -> None:
    from mdreid.index.search import pair_index
    from mdreid.index.store import GalleryStore

    store = GalleryStore.open(args.index)
    ids = store.append(_new_items(args, store, args.role))
    for key in list(store.info["faiss"]):  # bring every FAISS index made so far up to date
        pair, kind = key.split("/")
        pair_index(store, *pair.split("->"), kind)
    print(f"{args.index}: added items {ids.start}..{ids.stop - 1}; {store.size} items")


def cmd_search(args: argparse.Namespace) -> None:
    from mdreid.index.results import write_results
    from mdreid.index.search import search
    from mdreid.index.store import GalleryItems, GalleryStore

    store = GalleryStore.open(args.index)
    queries = _new_items(args, store, "query")
    g_subset = args.gallery_modalities or _common_subset(store.items().present)
    subsets = [args.query_modalities or _letters(present) for present in queries.present]
    results: list = [None] * len(queries)
    for subset in dict.fromkeys(subsets):  # one search (one FAISS index) per query subset
        rows = [i for i, s in enumerate(subsets) if s == subset]
        group = GalleryItems.cat([queries.rows(i, i + 1) for i in rows])
        found = search(store, group, subset, g_subset, args.top_k, args.kind, args.nprobe)
        for i, hits in zip(rows, found, strict=True):
            results[i] = (queries.rows(i, i + 1), subset, hits)
    text = write_results(results, g_subset, args.out, args.top_k)
    if args.out is None:
        print(text)
    else:
        print(f"{args.out}: {', '.join(sorted(p.name for p in Path(args.out).iterdir()))}")


def _letters(mask) -> str:
    """``[True, False, True]`` -> ``"RT"``."""
    from mdreid.modalities import LETTERS

    return "".join(c for c, p in zip(LETTERS, mask.tolist(), strict=True) if p)


def _common_subset(present) -> str:
    common = _letters(present.all(dim=0))
    if not common or not bool((present == present[0]).all()):
        raise MDReIDError(
            "the gallery items have different modalities; choose the gallery subset with --gallery-modalities"
        )
    return common


def parser() -> argparse.ArgumentParser:
    main = OneLineParser(prog="python -m mdreid.index", description=__doc__.split("\n\n")[0])
    sub = main.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("index", help="the index folder")
        p.add_argument("--manifest", help="a manifest (docs/manifest.md) naming the images")
        p.add_argument("--splits", help="comma-separated manifest splits to take (default: every row)")
        p.add_argument("--batch-size", type=int, default=32)
        p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda:0, ...")

    build = sub.add_parser("build", help="extract a gallery's features once and index them")
    common(build)
    source = build.add_mutually_exclusive_group(required=True)
    source.add_argument("--ckpt", help="a checkpoint of mdreid.train (or an official .pth)")
    source.add_argument(
        "--features", help="a feature file of any method (docs/feature_files.md); no checkpoint"
    )
    build.add_argument("--role", choices=ROLES, default="gallery", help="dataset split to index")
    build.add_argument("--similarity", choices=("code", "paper"), default="code")
    build.add_argument("--pairs", nargs="*", help="make these pairs' FAISS indices now, e.g. RNT->RNT T->R")
    build.add_argument(
        "--kind", choices=KINDS, default="flat", help="flat = exact; ivf for large galleries (docs/index.md)"
    )
    build.add_argument(
        "--nlist", type=int, help=f"ivf cells (default: one per {IVF_CELL_SIZE} gallery items)"
    )
    build.add_argument(
        "overrides", nargs="*", help="Hydra overrides naming a dataset, e.g. experiment=synthetic"
    )
    add = sub.add_parser("add", help="extract and append new gallery items (no rebuild)")
    common(add)
    add.add_argument("--role", choices=ROLES, default="gallery")
    add.add_argument("--features", help="new items from a feature file (an index built from one)")
    add.add_argument("overrides", nargs="*")
    find = sub.add_parser("search", help="top-k gallery items of query images of any modalities")
    common(find)
    for m, name in (("rgb", "RGB"), ("nir", "near-infrared"), ("tir", "thermal")):
        find.add_argument(f"--{m}", help=f"the query's {name} image")
    find.add_argument("--camid", type=int, help="the query camera's id (with image files)")
    find.add_argument(
        "--features", help="queries: the query rows of a feature file (an index built from one)"
    )
    find.add_argument("--query-modalities", help="compare only these query modalities, e.g. RT")
    find.add_argument(
        "--gallery-modalities", help="gallery subset G (default: the modalities every item has)"
    )
    find.add_argument("--top-k", type=int, default=10)
    find.add_argument(
        "--kind", choices=KINDS, default="flat", help="flat = exact; ivf for large galleries (docs/index.md)"
    )
    find.add_argument(
        "--nprobe", type=int, default=IVF_NPROBE, help=f"ivf cells searched (default: {IVF_NPROBE})"
    )
    find.add_argument("--out", help="folder for results.json and ranked_list.png")
    find.add_argument("overrides", nargs="*")
    return main


@cli_errors
def main(argv: Sequence[str] | None = None) -> int:
    main_parser = parser()
    args, extra = main_parser.parse_known_args(argv)  # overrides may come after options
    unknown = [x for x in extra if x.startswith("-") or "=" not in x]
    if unknown:
        main_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.overrides = [*getattr(args, "overrides", []), *extra]
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.overrides:  # a misspelt key stops the command before any checkpoint or image is read
        from mdreid.config.check import check_command_line

        check_command_line(
            "eval.yaml", _dataset_overrides(args), multirun=False, entry="python -m mdreid.index"
        )
    {"build": cmd_build, "add": cmd_add, "search": cmd_search}[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
