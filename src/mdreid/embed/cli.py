"""``python -m mdreid.embed``: embed images with a trained model into a feature file (docs/feature_files.md).

    python -m mdreid.embed --ckpt CKPT --manifest items.csv --out items.safetensors
    python -m mdreid.embed --ckpt CKPT --frames site/ --camid 0 --out frames.safetensors
    python -m mdreid.embed --ckpt CKPT --video rgb=day.mkv --video tir=thermal.mkv --detections det.txt \\
        --align timestamp --out crops.safetensors --devices 2

The file is what ``mdreid.score`` scores and what ``mdreid.index`` indexes; a video's rows keep their frame,
box and track id (docs/deploy.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mdreid.process.errors import MDReIDError, cli_errors


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mdreid.embed", description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True, help="an mdreid checkpoint or an official MDReID .pth")
    p.add_argument("--out", required=True, help="the feature file to write (.safetensors)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--manifest", help="a manifest (docs/manifest.md); ids, cameras and roles from its columns"
    )
    what.add_argument("--frames", help="a folder with rgb/, nir/, tir/ sub-folders of aligned frames")
    what.add_argument(
        "--video", action="append", metavar="MODALITY=FILE", help="one video per modality (rgb, nir, tir)"
    )
    p.add_argument("--splits", help="manifest splits to embed, comma-separated (default: all rows)")
    p.add_argument("--detections", help="MOTChallenge detections of the videos (frame,id,x,y,w,h,score,...)")
    p.add_argument(
        "--align", choices=("index", "timestamp"), default="index", help="how the videos' frames match"
    )
    p.add_argument("--clip-boxes", action="store_true", help="cut boxes reaching outside the frame to it")
    p.add_argument("--min-score", type=float, help="leave out detections scoring below this")
    p.add_argument(
        "--missing", choices=("error", "absent"), default="error", help="a frame one sub-folder lacks"
    )
    p.add_argument(
        "--camid", type=int, default=-1, help="camera id of frames and videos (-1: no camera embedding)"
    )
    p.add_argument("--image-size", help="H,W of an official .pth whose weights do not settle it")
    p.add_argument("--accelerator", default="auto", help="auto, cpu or gpu")
    p.add_argument("--devices", type=int, default=1, help="devices (one process each) sharing the work")
    p.add_argument("--precision", default="32-true", help="32-true, 16-mixed or bf16-mixed (GPU)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-workers", type=int, default=0, help="data-loading processes per device")
    p.add_argument("--trust-checkpoint", action="store_true", help="allow a checkpoint that needs unpickling")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _videos(specs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for spec in specs:
        modality, sep, path = spec.partition("=")
        if not sep or not path:
            raise MDReIDError(f"--video {spec}: write MODALITY=FILE, e.g. --video tir=thermal.mkv")
        if modality.lower() in out:
            raise MDReIDError(f"--video {spec}: {modality} is given twice")
        out[modality.lower()] = path
    return out


def run(args: argparse.Namespace) -> Path:
    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise MDReIDError(f"--out {out}: feature files are written as .safetensors")
    if args.video and not args.detections:
        raise MDReIDError("--video needs --detections FILE (MOTChallenge text: frame,id,x,y,w,h,score,...)")
    if args.detections and not args.video:
        raise MDReIDError("--detections goes with --video MODALITY=FILE")
    out.parent.mkdir(parents=True, exist_ok=True)
    import torch

    from mdreid.checkpoint import resolve_checkpoint
    from mdreid.embed.embedder import Embedder
    from mdreid.embed.predict import predict
    from mdreid.embed.sources import folder_items, manifest_items, video_items
    from mdreid.feature_file import write_feature_file

    size = tuple(int(v) for v in args.image_size.split(",")) if args.image_size else None
    gpu = args.accelerator == "gpu" or (args.accelerator == "auto" and torch.cuda.is_available())
    ckpt = resolve_checkpoint(args.ckpt, key="--ckpt", trust=args.trust_checkpoint)
    embedder = Embedder.from_checkpoint(
        ckpt,
        "cuda" if gpu else "cpu",
        args.precision,
        image_size=size,
        batch_size=args.batch_size,
        trust=args.trust_checkpoint,
    )
    if args.manifest:
        items = manifest_items(args.manifest, embedder.rule, args.splits.split(",") if args.splits else None)
    elif args.frames:
        items = folder_items(args.frames, embedder.rule, args.camid, args.missing)
    else:
        items = video_items(
            _videos(args.video), args.detections, args.camid, args.align, args.clip_boxes, args.min_score
        )
    embedder.camids(items.camid, len(items))  # every camera id fits the model before anything runs
    embeddings, seconds = predict(
        embedder, items, out.parent, args.accelerator, args.devices, args.num_workers, not args.no_progress
    )
    images = int(embeddings.present.sum())
    provenance = {
        "checkpoint": str(Path(args.ckpt).absolute()),
        "similarity": embedder.mode,
        "image_size": list(embedder.image_size),
    }
    features = embeddings.feature_set(
        items.pid,
        items.is_query,
        items.is_gallery,
        items.junk,
        method="mdreid.embed",
        provenance=provenance,
        **items.extra,
    )
    write_feature_file(out, features)
    print(
        f"wrote {out}: {len(items)} items ({images} images) in {seconds:.1f} s on {args.devices} device(s): "
        f"{len(items) / max(seconds, 1e-9):.1f} items/s, {images / max(seconds, 1e-9):.1f} images/s"
    )
    return out


@cli_errors
def main(argv: list[str] | None = None) -> None:
    run(parser().parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
