"""What the validation split costs: its size on the real benchmarks, and its time against a training epoch.

1. Counted (``--manifests DIR``: the real filename lists, one ``<dataset>_<split>.txt`` per split): the
   default ``data.val`` applied to the real training splits: held-out identities, validation query and gallery
   images, against the training images that remain and the test split. A validation pass runs each image
   once, forward only, in evaluation mode; a training epoch runs each training triplet forward and backward.
2. Timed (the synthetic bench, ``experiment=synthetic data.synth.preset=bench``): one training epoch and one
   validation pass of the same model in the same process, ``--repeat`` times; medians.

    python scripts/bench_validation.py --manifests ../shared/manifests --repeat 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from mdreid.data.readers import msvr310, rgbnt100, rgbnt201
from mdreid.data.readers.common import Layout
from mdreid.data.records import Benchmark, Record
from mdreid.data.val_split import ValConfig, split_validation

LAYOUTS: dict[str, tuple[Layout, str, str | None]] = {
    # dataset -> (layout, gallery list, query list or None when the query is the gallery)
    "rgbnt201": (rgbnt201.LAYOUT, "rgbnt201_test", None),
    "rgbnt100": (rgbnt100.LAYOUT, "rgbnt100_test", None),
    "msvr310": (msvr310.LAYOUT, "msvr310_test", "msvr310_query3"),
}


def _records(layout: Layout, names: list[str], split: str) -> list[Record]:
    out = []
    for i, name in enumerate(sorted(names)):
        pid, camid, sceneid = layout.grammar.parse(Path(name).name)
        out.append(Record((name, name, name), pid, camid, sceneid, index=i, split=split))
    return out


def counted(manifests: Path) -> list[str]:
    rows = [
        "| dataset | held-out ids | val query / gallery images | training images left | test gallery |"
        " val pass / training epoch (images x passes) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for dataset, (layout, gallery_list, query_list) in LAYOUTS.items():
        read = lambda stem: (manifests / f"{stem}.txt").read_text().split()  # noqa: E731
        train = _records(layout, read(f"{dataset}_train"), "train")
        labels = {pid: i for i, pid in enumerate(sorted({r.pid for r in train}))}
        train = [Record(r.paths, r.pid, r.camid, r.sceneid, labels[r.pid], r.index) for r in train]
        gallery = _records(layout, read(gallery_list), "gallery")
        query = gallery if query_list is None else _records(layout, read(query_list), "query")
        bench = Benchmark(dataset, "", train, query, gallery, layout.junk_rule, None, layout.val_query_every)
        split = split_validation(bench, ValConfig())
        val = split.val
        images = len({r.paths for r in val.gallery}) + (0 if val.query_is_gallery else len(val.query))
        # one forward pass per validation image vs forward + backward (about 3 forwards) per training image
        ratio = images / (3 * len(split.train))
        rows.append(
            f"| {dataset} | {len({r.pid for r in val.gallery})} | {len(val.query)} / {len(val.gallery)} | "
            f"{len(split.train)} | {len(gallery)} | {ratio:.1%} |"
        )
    return rows


def timed(repeat: int) -> list[str]:
    import lightning as L

    from mdreid.config.hydra import compose_config
    from mdreid.data.data_config import DataConfig
    from mdreid.factory import build_datamodule, build_module

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_config(
            "train",
            [
                "experiment=synthetic",
                "data.synth.preset=bench",
                f"paths.data_dir={tmp}",
                f"paths.output_dir={tmp}/run",
                "logger=none",
                "callbacks=none",
                "data.num_workers=0",
            ],
        )
        datamodule = build_datamodule(DataConfig.parse(cfg.data))
        model = build_module(cfg, datamodule)
        trainer = L.Trainer(
            max_epochs=1,
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            check_val_every_n_epoch=10_000,
            use_distributed_sampler=False,
        )  # fit never validates by itself: each pass is timed on its own
        epochs, passes = [], []
        for _ in range(repeat):
            start = time.perf_counter()
            trainer.fit_loop.max_epochs = trainer.current_epoch + 1
            trainer.fit(model, datamodule=datamodule)
            epochs.append(time.perf_counter() - start)
            start = time.perf_counter()
            trainer.validate(model, datamodule=datamodule, verbose=False)
            passes.append(time.perf_counter() - start)
        bench = datamodule.benchmark
        epoch, val = statistics.median(epochs), statistics.median(passes)
        return [
            "| synthetic bench | training images | validation images | training epoch (s) | validation pass (s) "
            "| ratio |",
            "|---|---:|---:|---:|---:|---:|",
            f"| 60 ids, 6 held out | {len(bench.train)} | {len(bench.val.gallery)} | {epoch:.1f} | {val:.1f} | "
            f"{val / epoch:.1%} |",
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--manifests", type=Path, help="folder of the real filename lists (count the splits)")
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds; medians are reported")
    args = parser.parse_args()
    if args.manifests:
        print("\n".join(counted(args.manifests)), flush=True)
    print("\n".join(timed(args.repeat)))


if __name__ == "__main__":
    main()
