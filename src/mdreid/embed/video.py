"""Frames of a video by index, decoded with PyAV (FFmpeg), and the alignment of one video per modality.

PyAV rather than OpenCV: its seeks are exact (seek to the preceding keyframe, then decode up to the frame's
presentation time), the frame -> time map comes from the container's packets, so variable frame rates and
B-frames are handled, 16-bit grey streams (thermal cameras) decode to uint16, and FFmpeg's errors arrive as
exceptions. OpenCV's frame-position seeks depend on the backend and are inexact on such files.

A ``Video`` opens its file lazily, so it can be handed to worker processes (it pickles as its path).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from mdreid.process.errors import MDReIDError

_CONTINUE = 48  # decode forward instead of seeking when the wanted frame is at most this far ahead
_GREY = frozenset({"gray", "gray8", "gray16le", "gray16be", "grayf32le"})


def _av() -> Any:
    try:
        import av
    except ImportError as err:
        raise MDReIDError("reading videos needs PyAV: pip install 'mdreid[video]'") from err
    return av


def _unreadable(path: str, err: Exception) -> MDReIDError:
    return MDReIDError(
        f"{path}: cannot decode the video ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
        "the file is damaged or its codec is not supported by this FFmpeg build: re-encode it (e.g. H.264 or FFV1)"
    )


@dataclass
class Video:
    """One modality's video: ``len`` frames, ``times`` their presentation times in seconds (increasing),
    ``size`` its frames' (width, height)."""

    path: str

    def __post_init__(self) -> None:
        self._container: Any = None
        self._cursor: tuple[int, Any] | None = None
        self._pts, self.times, self.size = self._index()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_container": None, "_cursor": None, "_decoder": None}

    def _open(self) -> tuple[Any, Any]:
        av = _av()
        if not Path(self.path).is_file():
            raise MDReIDError(f"{self.path}: no such video file")
        try:
            container = av.open(self.path)
        except av.FFmpegError as err:
            raise _unreadable(self.path, err) from err
        if not container.streams.video:
            container.close()
            raise MDReIDError(f"{self.path}: the file has no video stream")
        return container, container.streams.video[0]

    def _index(self) -> tuple[list[int], np.ndarray, tuple[int, int]]:
        """Every frame's pts from a packet-only pass (no decoding), in presentation order."""
        av = _av()
        container, stream = self._open()
        try:
            if stream.codec_context is None or stream.codec_context.codec is None:
                raise _unreadable(self.path, ValueError("no decoder"))
            base = stream.time_base or Fraction(1, 1)
            size = (stream.codec_context.width, stream.codec_context.height)
            pts = sorted(p.pts for p in container.demux(stream) if p.pts is not None and p.size > 0)
        except av.FFmpegError as err:
            raise _unreadable(self.path, err) from err
        finally:
            container.close()
        if not pts:
            raise MDReIDError(f"{self.path}: the video has no frames")
        if len(set(pts)) != len(pts):
            raise MDReIDError(
                f"{self.path}: {len(pts) - len(set(pts))} frame(s) share a timestamp, so frames cannot be told "
                "apart; re-mux the file with proper timestamps"
            )
        return pts, np.array([float(p * base) for p in pts]), size

    def __len__(self) -> int:
        return len(self._pts)

    def _frames(self, index: int) -> Iterator[tuple[int, Any]]:
        """Decoded frames from the keyframe before ``index`` on, with their indices."""
        av = _av()
        if self._container is None:
            self._container = self._open()
        container, stream = self._container
        container.seek(self._pts[index], stream=stream, backward=True, any_frame=False)
        position = {p: i for i, p in enumerate(self._pts)}
        try:
            for frame in container.decode(stream):
                if frame.pts in position:
                    yield position[frame.pts], frame
        except av.FFmpegError as err:
            raise _unreadable(self.path, err) from err

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` (0-based): ``(H, W, 3)`` uint8 RGB, or ``(H, W)`` for a grey stream (uint8,
        uint16 or float32 as stored, for the high-bit-depth rule)."""
        if not 0 <= index < len(self):
            raise MDReIDError(f"{self.path}: no frame {index + 1}; the video has {len(self)} frames")
        cursor = self._cursor
        if cursor is None or not cursor[0] < index <= cursor[0] + _CONTINUE:
            self._decoder = self._frames(index)
        for i, frame in self._decoder:
            self._cursor = (i, frame)
            if i >= index:
                break
        else:
            raise MDReIDError(f"{self.path}: frame {index + 1} could not be decoded (the file ends early)")
        if self._cursor[0] != index:
            raise MDReIDError(f"{self.path}: frame {index + 1} could not be decoded (seeking landed past it)")
        frame = self._cursor[1]
        if frame.format.name in _GREY:
            array = frame.to_ndarray()
            return array.astype(array.dtype.newbyteorder("="))  # native byte order
        return frame.to_ndarray(format="rgb24")


def reference_video(videos: Sequence[Video | None]) -> Video:
    """The video whose frames the detections count: the one with the most frames (the first in R, N, T
    order among equals), since a camera that is off for a while leaves a gap in its own video only."""
    given = [v for v in videos if v is not None]
    return max(given, key=len)  # max keeps the first of equals


def align(videos: Sequence[Video | None], by: str) -> list[list[int | None]]:
    """For every frame of the reference video (``reference_video``), the frame index of each modality's video
    (None: no video, or no frame at that time). ``by="index"``: frame i of every video, which must all have
    the same length; ``by="timestamp"``: the frame nearest in time, if within half the reference's median
    frame interval (an RGB camera switched off at night leaves a gap, not a shifted stream)."""
    given = [v for v in videos if v is not None]
    if not given:
        raise MDReIDError("no video given; name at least one with --video MODALITY=FILE")
    reference = reference_video(videos)
    if by == "index":
        lengths = {v.path: len(v) for v in given}
        if len(set(lengths.values())) != 1:
            raise MDReIDError(
                f"the modalities' videos have different lengths ({', '.join(f'{p}: {n} frames' for p, n in lengths.items())}); "
                "align them by time with --align timestamp, or cut them to the same frames"
            )
        return [[i if v is not None else None for v in videos] for i in range(len(reference))]
    if by != "timestamp":
        raise MDReIDError(f"--align {by}: use index or timestamp")
    step = float(np.median(np.diff(reference.times))) if len(reference) > 1 else np.inf
    columns = []
    for video in videos:
        if video is None:
            columns.append([None] * len(reference))
            continue
        after = np.searchsorted(video.times, reference.times).clip(1, max(1, len(video) - 1))
        before = after - 1
        nearer_after = np.abs(video.times[after % len(video)] - reference.times) < np.abs(
            video.times[before] - reference.times
        )
        nearest = np.where(nearer_after, after % len(video), before)
        close = np.abs(video.times[nearest] - reference.times) <= step / 2
        columns.append([int(j) if ok else None for j, ok in zip(nearest, close, strict=True)])
    return [list(row) for row in zip(*columns, strict=True)]
