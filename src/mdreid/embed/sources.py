"""What ``python -m mdreid.embed`` embeds: manifest rows, a folder of aligned frames, or detections in videos.

Each source lists its items with their metadata up front (so a bad input fails before any model runs) and
gives an item's images on demand, in R, N, T order (None where absent), in a worker process if need be.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mdreid.data.bit_depth import BitDepthRule
from mdreid.data.records import Record
from mdreid.data.triplet_dataset import read_modalities
from mdreid.embed.detections import read_detections
from mdreid.embed.video import Video, align, reference_video
from mdreid.process.errors import MDReIDError

FOLDERS: tuple[str, ...] = ("rgb", "nir", "tir")  # a frame folder's sub-folders, in R, N, T order
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})


@dataclass
class Items:
    """N items to embed: ``source`` gives their images; the rest is what the feature file records."""

    source: Any  # RecordImages | VideoCrops
    camid: torch.Tensor  # [N] the model's camera ids (-1: no camera embedding)
    pid: torch.Tensor
    is_query: torch.Tensor
    is_gallery: torch.Tensor
    junk: str = "camera"
    extra: dict[str, Any] = field(
        default_factory=dict
    )  # FeatureSet fields: sceneid, frame, track, box, names

    def __len__(self) -> int:
        return int(self.camid.shape[0])


@dataclass
class RecordImages:
    """Images of ``Record``s (manifest rows, aligned frames), decoded as evaluation decodes them."""

    records: list[Record]
    rule: BitDepthRule

    def images(self, index: int) -> list[Any]:
        record = self.records[index]
        decoded = iter(read_modalities(record, record.present, self.rule))
        return [next(decoded) if keep else None for keep in record.present]


@dataclass
class VideoCrops:
    """Detection crops: ``frames[i]`` the video frame of each modality (None: absent), ``boxes[i]`` the
    pixel bounds ``(left, top, right, bottom)``."""

    videos: list[Video | None]
    frames: list[list[int | None]]
    boxes: list[tuple[int, int, int, int]]

    def images(self, index: int) -> list[Any]:
        left, top, right, bottom = self.boxes[index]
        out: list[Any] = []
        for video, frame in zip(self.videos, self.frames[index], strict=True):
            out.append(None if frame is None else video.frame(frame)[top:bottom, left:right])  # type: ignore[union-attr]
        return out


def _flags(values: Sequence[bool]) -> torch.Tensor:
    return torch.tensor(list(values), dtype=torch.bool)


def manifest_items(path: str | Path, rule: BitDepthRule, splits: Sequence[str] | None = None) -> Items:
    """The rows of a manifest (docs/manifest.md): ids, cameras and roles from its columns (``test`` rows are
    query and gallery); ``splits`` picks rows. Training rows have no role, so they must be left out."""
    from mdreid.data.readers.manifest import read_manifest

    rows = [r for r in read_manifest(path) if splits is None or r.split in splits]
    if not rows:
        raise MDReIDError(f"{path}: no row with split in {sorted(splits or [])}; check --splits")
    train = [r.number for r in rows if r.split == "train"]
    if train:
        raise MDReIDError(
            f"{path}: {len(train)} train row(s) (first at line {train[0]}) have no query or gallery role; "
            "embed the others with --splits query,gallery,test"
        )
    records = [Record(r.paths, r.pid, r.camid, r.sceneid, stitched=r.stitched) for r in rows]
    scene = any(r.sceneid >= 0 for r in rows)
    extra: dict[str, Any] = {"names": [next(p for p in r.paths if p) for r in rows]}
    if scene:
        extra["sceneid"] = torch.tensor([r.sceneid for r in rows])
    return Items(
        RecordImages(records, rule),
        camid=torch.tensor([r.camid for r in rows]),
        pid=torch.tensor([r.pid for r in rows]),
        is_query=_flags([r.split in ("query", "test") for r in rows]),
        is_gallery=_flags([r.split in ("gallery", "test") for r in rows]),
        junk="scene" if scene else "camera",
        extra=extra,
    )


def folder_items(root: str | Path, rule: BitDepthRule, camid: int, missing: str = "error") -> Items:
    """A folder with sub-folders ``rgb/``, ``nir/``, ``tir/`` (any of them) of frames matched by file name.
    A name absent from one sub-folder is an error, or with ``missing="absent"`` that modality is absent."""
    root = Path(root)
    folders = [root / name if (root / name).is_dir() else None for name in FOLDERS]
    if not any(folders):
        raise MDReIDError(
            f"{root}: no sub-folder {', '.join(n + '/' for n in FOLDERS)}; put each modality's frames in one"
        )
    listed = [
        {p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES} if folder else set()
        for folder in folders
    ]
    names = sorted(set().union(*listed))
    if not names:
        raise MDReIDError(f"{root}: no image files in its modality sub-folders")
    if missing == "error":
        for folder, have in zip(folders, listed, strict=True):
            gaps = [n for n in names if folder is not None and n not in have]
            if gaps:
                raise MDReIDError(
                    f"{folder}: missing frame {gaps[0]} ({len(gaps)} of {len(names)} frames missing); every "
                    "modality needs the same file names, or embed without it there with --missing absent"
                )
    elif missing != "absent":
        raise MDReIDError(f"--missing {missing}: use error or absent")
    records = [
        Record(
            tuple(
                str(f / n) if f is not None and n in have else ""
                for f, have in zip(folders, listed, strict=True)
            ),
            -1,
            camid,
        )  # type: ignore[arg-type]
        for n in names
    ]
    n = len(names)
    return Items(
        RecordImages(records, rule),
        camid=torch.full((n,), camid),
        pid=torch.full((n,), -1),
        is_query=torch.ones(n, dtype=torch.bool),
        is_gallery=torch.ones(n, dtype=torch.bool),
        extra={"names": names, "frame": torch.arange(1, n + 1)},
    )


def video_items(
    videos: dict[str, str],
    detections: str | Path,
    camid: int,
    by: str = "index",
    clip: bool = False,
    min_score: float | None = None,
) -> Items:
    """Every detection's crop in every modality that has a frame at that time. ``videos`` maps ``rgb`` /
    ``nir`` / ``tir`` to files; detection frames count the reference video's frames from 1
    (``video.reference_video``: the longest)."""
    unknown = sorted(set(videos) - set(FOLDERS))
    if unknown:
        raise MDReIDError(f"--video {unknown[0]}=...: name the modality as one of {', '.join(FOLDERS)}")
    opened = [Video(videos[m]) if m in videos else None for m in FOLDERS]
    table = align(opened, by)
    reference = reference_video(opened)
    sizes = {v.path: v.size for v in opened if v is not None}
    if len(set(sizes.values())) != 1:
        raise MDReIDError(
            f"the modalities' videos have different frame sizes ({', '.join(f'{p}: {w}x{h}' for p, (w, h) in sizes.items())}); "
            "aligned frames must share one pixel grid"
        )
    dets = read_detections(detections, min_score)
    frames, boxes = [], []
    for det in dets:
        if det.frame > len(table):
            raise MDReIDError(
                f"{detections} line {det.line}: missing frame {det.frame}: {reference.path} has "
                f"{len(table)} frames; the detections belong to another video"
            )
        row = table[det.frame - 1]
        frames.append(row)
        boxes.append(det.pixels(*reference.size, clip=clip, where=str(detections)))
    n = len(dets)
    present = torch.tensor([[f is not None for f in row] for row in frames], dtype=torch.bool)
    if not bool(present.any(dim=1).all()):
        raise MDReIDError(f"{detections}: a detection's frame has no image in any modality")
    return Items(
        VideoCrops(opened, frames, boxes),
        camid=torch.full((n,), camid),
        pid=torch.tensor([d.track for d in dets]),
        is_query=torch.ones(n, dtype=torch.bool),
        is_gallery=torch.ones(n, dtype=torch.bool),
        extra={
            "frame": torch.tensor([d.frame for d in dets]),
            "track": torch.tensor([d.track for d in dets]),
            "box": torch.tensor(np.array([d.box for d in dets]), dtype=torch.float32),
        },
    )
