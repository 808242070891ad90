"""How a 16-bit or float image (a thermal camera's radiometric PNG or TIFF) becomes the 8-bit RGB the model reads.

PIL's ``convert("RGB")`` clips every sample above 255, so a 16-bit thermal image would silently turn white.
One rule (``data.high_bit_depth``, docs/datasets.md "High-bit-depth images") maps such images to 0..255 in
training and evaluation, and for an exported model's preprocessing (:func:`open_rgb`); plots use the default:

- ``stretch`` (default): per image, the smallest sample maps to 0 and the largest to 255, linearly. A
  constant image has no span to divide by and maps to 0 everywhere (its smallest sample's value).
- ``range``: a fixed ``[lo, hi]`` maps to 0..255 in every image, so one temperature is one grey level
  across images. A sample outside the range is an error naming the file and its values, never a clip.

Either way the result is ``floor((v - lo) * 255 / (hi - lo) + 0.5)``, computed in float64, so a 16-bit copy
``v * 257`` of an 8-bit image that spans 0..255 maps back to exactly ``v``. A NaN or infinite sample is an
error naming the file. 8-bit images (RGB, grey, palette...) are read as before, byte for byte.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from mdreid.config.sections import plain, typed_section
from mdreid.process.errors import MDReIDError

# Pillow's one-channel modes with more than 8 bits: 16-bit unsigned (native, little or big endian), 32-bit
# signed integer, 32-bit float. A 16-bit PNG opens as I;16, a 16-bit TIFF as I;16 or I;16B, a float TIFF as F.
HIGH_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
RULE_MODES = ("stretch", "range")
KEY = "data.high_bit_depth"


@dataclass(frozen=True)
class BitDepthRule:
    """The mapping of high-bit-depth samples to 0..255: ``stretch`` per image, or a fixed ``range``."""

    mode: str = "stretch"
    range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.mode not in RULE_MODES:
            raise MDReIDError(f"{KEY}.mode={self.mode!r}: use one of {', '.join(RULE_MODES)}")
        if self.mode == "range":
            bounds = self.range
            if bounds is None or len(bounds) != 2 or not all(np.isfinite(b) for b in bounds):
                raise MDReIDError(
                    f"{KEY}.range={bounds!r}: mode=range needs [lo, hi], the sample values that map to 0 "
                    "and 255, e.g. [0, 65535] or [-20.0, 60.0] for degrees Celsius"
                )
            if not bounds[0] < bounds[1]:
                raise MDReIDError(f"{KEY}.range={list(bounds)}: lo must be below hi")
        elif self.range is not None:
            raise MDReIDError(
                f"{KEY}.range={list(self.range)} is only used with {KEY}.mode=range; set the mode or drop the range"
            )

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> BitDepthRule:
        """The rule of the ``data.high_bit_depth`` section (``{mode, range}``, a config node or a checkpoint's
        plain dict); None is the default stretch."""
        return typed_section(cls, plain(cfg), KEY)

    def describe(self) -> str:
        """The rule in words, as ``verify`` and ``stats`` print it."""
        if self.mode == "stretch":
            return "min-max stretch per image to 0..255"
        lo, hi = self.range  # type: ignore[misc]
        return f"fixed range [{lo:g}, {hi:g}] to 0..255"

    def _problem(self, values: np.ndarray) -> tuple[str, str] | None:
        """(what is wrong, the fix) when the rule cannot map these samples; None if it can."""
        finite = np.isfinite(values)
        if not finite.all():
            nan = int(np.isnan(values).sum())
            return (
                f"{nan} NaN and {int((~finite).sum()) - nan} infinite sample(s)",
                "a float image must hold finite values (e.g. degrees Celsius): re-export that file",
            )
        if self.mode == "range":
            lo, hi = self.range  # type: ignore[misc]
            low, high = float(values.min()), float(values.max())
            if low < lo or high > hi:
                return (
                    f"samples span {low:g}..{high:g}, outside {KEY}.range=[{lo:g}, {hi:g}]",
                    f"widen the range to cover every file, or use {KEY}.mode=stretch",
                )
        return None

    def check(self, values: np.ndarray) -> str | None:
        """Why the rule cannot map these samples (non-finite, or outside the fixed range); None if it can."""
        problem = self._problem(values)
        return None if problem is None else problem[0]

    def to_8bit(self, samples: np.ndarray, path: str) -> np.ndarray:
        """``samples`` (any real dtype) mapped to uint8 by the rule; ``path`` names the file in errors."""
        values = np.asarray(samples, dtype=np.float64)
        problem = self._problem(values)
        if problem is not None:
            raise MDReIDError(
                f"{path}: {problem[0]}; {problem[1]} (`python -m mdreid.data verify` lists every such file)"
            )
        if self.mode == "stretch":
            lo, hi = float(values.min()), float(values.max())
            if hi == lo:  # a constant image: every sample is its own minimum, which maps to 0
                return np.zeros(values.shape, dtype=np.uint8)
        else:
            lo, hi = self.range  # type: ignore[misc]
        return np.floor((values - lo) * 255.0 / (hi - lo) + 0.5).astype(np.uint8)


def is_high_bit(mode: str) -> bool:
    """Whether an image of this Pillow mode goes through the rule instead of ``convert("RGB")``."""
    return mode in HIGH_BIT_MODES


def to_rgb(img: Image.Image, path: str, rule: BitDepthRule) -> Image.Image:
    """The RGB image the model reads: 8-bit modes through ``convert("RGB")``, high-bit ones through ``rule``."""
    if not is_high_bit(img.mode):
        return img.convert("RGB")
    grey = Image.fromarray(rule.to_8bit(np.asarray(img), path))
    return grey.convert("RGB")


def open_rgb(path: str, rule: BitDepthRule = BitDepthRule()) -> Image.Image:
    """Decode ``path`` into the RGB image the model reads (then resized and normalised by the test transform)."""
    with Image.open(path) as img:
        return to_rgb(img, path, rule)
