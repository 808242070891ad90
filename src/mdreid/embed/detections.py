"""Detections in MOTChallenge text: ``frame, id, bb_left, bb_top, bb_width, bb_height, conf[, x, y, z]``.

Frames are numbered from 1, and so are pixels: a box's top-left pixel is ``(bb_left, bb_top)``, the image's
first pixel is ``(1, 1)``, as in the MOTChallenge files and the tools that read them. ``id`` is -1 in a
detector's ``det.txt`` and a track id in ``gt.txt`` or a tracker's output; it is kept as the track id.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from mdreid.process.errors import MDReIDError

MIN_COLUMNS = 7


@dataclass(frozen=True)
class Detection:
    line: int  # 1-based line number in its file
    frame: int  # 1-based
    track: int
    box: tuple[float, float, float, float]  # bb_left, bb_top, bb_width, bb_height (1-based pixels)
    score: float

    def pixels(self, width: int, height: int, clip: bool, where: str) -> tuple[int, int, int, int]:
        """The crop ``(left, top, right, bottom)`` in 0-based pixel bounds of a ``width x height`` frame;
        a box reaching outside it is an error, or with ``clip`` cut to the frame."""
        x, y, w, h = self.box
        left, top = round(x - 1), round(y - 1)
        right, bottom = round(x - 1 + w), round(y - 1 + h)
        if clip:
            left, top, right, bottom = max(left, 0), max(top, 0), min(right, width), min(bottom, height)
        if left < 0 or top < 0 or right > width or bottom > height or right <= left or bottom <= top:
            raise MDReIDError(
                f"{where} line {self.line}: box (x={x:g}, y={y:g}, w={w:g}, h={h:g}) lies outside frame "
                f"{self.frame} ({width}x{height}, pixels 1..{width} x 1..{height}); fix the detections, or "
                "cut boxes to the frame with --clip-boxes"
            )
        return left, top, right, bottom


def read_detections(path: str | Path, min_score: float | None = None) -> list[Detection]:
    """Every detection of ``path`` in file order (those scoring below ``min_score`` left out); a malformed
    line is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise MDReIDError(f"{path}: no such detections file (MOTChallenge text: frame,id,x,y,w,h,score,...)")
    out = []
    with path.open(newline="") as fh:
        for number, row in enumerate(csv.reader(fh), start=1):
            if not row or not "".join(row).strip():
                continue
            try:
                if len(row) < MIN_COLUMNS:
                    raise ValueError(f"{len(row)} columns, need at least {MIN_COLUMNS}")
                frame, track = int(float(row[0])), int(float(row[1]))
                box = tuple(float(v) for v in row[2:6])
                score = float(row[6])
            except ValueError as err:
                raise MDReIDError(
                    f"{path} line {number}: {err}; MOTChallenge lines are frame,id,bb_left,bb_top,bb_width,"
                    "bb_height,conf[,x,y,z]"
                ) from err
            if frame < 1:
                raise MDReIDError(f"{path} line {number}: frame {frame}; MOTChallenge frames start at 1")
            if min_score is None or score >= min_score:
                out.append(Detection(number, frame, track, box, score))  # type: ignore[arg-type]
    if not out:
        raise MDReIDError(
            f"{path}: no detections" + (f" scoring >= {min_score}" if min_score is not None else "")
        )
    return out
