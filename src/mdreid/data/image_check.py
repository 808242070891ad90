"""What an image file really is (format, mode, bit depth, size), and what a benchmark file cannot be.

A decodable file can still be wrong: a PNG renamed ``.jpg``, a 16-bit scan, a 1x1 thumbnail or a 4000x20
sliver all load, get converted to RGB and resized to the model input without a word. The three benchmarks
hold only 8-bit RGB JPEG crops (docs/datasets.md), so ``verify`` reports what each file is and flags what
they cannot contain.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageMode

from mdreid.data.bit_depth import KEY, BitDepthRule, is_high_bit

# Pillow calls a JPEG that carries a Multi-Picture (MPF) segment "MPO"; its first picture is a plain JPEG.
JPEG_FORMATS = frozenset({"JPEG", "MPO"})
# 8-bit colour, or 8-bit grey as an NIR camera may store it; the readers convert either to RGB losslessly.
PLAIN_MODES = frozenset({"RGB", "L"})
# Modes that are 8-bit but not plain, and why a benchmark cannot hold them: JPEG has no palette and no
# alpha, so these come from a renamed PNG/GIF and lose their meaning in the RGB conversion; CMYK is a
# print workflow's JPEG whose naive conversion to RGB shifts every colour.
MODE_REASONS = {
    "P": "palette colours",
    "PA": "palette colours with alpha",
    "RGBA": "an alpha channel",
    "RGBa": "an alpha channel",
    "LA": "an alpha channel",
    "La": "an alpha channel",
    "CMYK": "CMYK colour",
}
# Real crops are tens to a few hundred pixels per side; below 8 there is no object left to re-identify,
# only a thumbnail, an icon or a failed crop such as 1x1.
MIN_SIDE = 8
# Longer side / shorter side. The widest real files are the RGBNT100 strips, 768x128 = 6:1; person crops
# are about 1:2 to 1:4 and vehicle crops about 2:1. 12:1 is twice the strips' ratio, so no real crop
# (even one cut by the frame border) should reach it, while slivers such as 4000x20 (200:1) do.
MAX_ASPECT = 12.0


@dataclass(frozen=True)
class ImageInfo:
    """The real format, mode, bits per sample and size of a decoded file, whatever its name says; for a 16-bit
    or float file read with a rule, whether its samples are constant and why the rule cannot map them."""

    format: str
    mode: str
    bits: int
    width: int
    height: int
    constant: bool = False
    unmappable: str | None = None


def bit_depth(mode: str) -> int:
    """Bits per sample of a Pillow mode: 1 for "1", 8 for RGB/L/P/RGBA/CMYK, 16 for I;16, 32 for I and F."""
    if mode == "1":
        return 1
    return int(ImageMode.getmode(mode).typestr[2:]) * 8


def read_info(path: str, rule: BitDepthRule | None = None) -> ImageInfo:
    """Decode ``path`` once (raising on failure, like ``verify`` needs) and describe what it really holds;
    with ``rule``, check a 16-bit or float file's samples against it as training would."""
    with Image.open(path) as img:
        img.load()
        info = ImageInfo(img.format or "unknown", img.mode, bit_depth(img.mode), img.width, img.height)
        if rule is None or not is_high_bit(img.mode):
            return info
        samples = np.asarray(img, dtype=np.float64)
    problem = rule.check(samples)
    constant = problem is None and float(samples.min()) == float(samples.max())
    return replace(info, constant=constant, unmappable=problem)


def _named_as(path: str, fmt: str) -> bool:
    """Whether the file's extension is one Pillow registers for ``fmt`` (.png for PNG, .tif/.tiff for TIFF)."""
    extension = os.path.splitext(path)[1].lower()
    return Image.registered_extensions().get(extension) == fmt or (
        fmt == "MPO" and extension in (".jpg", ".jpeg")
    )


def image_flags(path: str, info: ImageInfo, own_data: bool = False) -> list[str]:
    """Short reasons why a benchmark cannot contain this file; empty if it looks like a real crop.

    ``own_data`` (a manifest): any format is fine if the extension says it, and 16-bit and float samples are
    expected (thermal cameras); they go through the high-bit-depth rule (``data.high_bit_depth``), which ``verify``
    reports separately.
    """
    flags = []
    if not (info.format in JPEG_FORMATS or (own_data and _named_as(path, info.format))):
        flags.append(f"{info.format} file named {os.path.splitext(path)[1] or 'without extension'}")
    if own_data and is_high_bit(info.mode):
        pass  # what a thermal camera writes; the high-bit-depth rule maps it
    elif ImageMode.getmode(info.mode).basetype == "F":
        flags.append(f"{info.bits}-bit float samples (mode {info.mode})")
    elif info.bits != 8:
        flags.append(f"{info.bits}-bit samples (mode {info.mode})")
    elif info.mode not in PLAIN_MODES:
        flags.append(f"{MODE_REASONS.get(info.mode, 'unusual colour mode')} (mode {info.mode})")
    short, long = sorted((info.width, info.height))
    if short < MIN_SIDE:
        flags.append(f"{info.width}x{info.height} has a side under {MIN_SIDE} pixels")
    elif long / short > MAX_ASPECT:
        ratio = long / short
        flags.append(f"{info.width}x{info.height} has aspect ratio {ratio:.3g}:1 (over {MAX_ASPECT:g}:1)")
    return flags


def depth_line(
    modes: Iterable[str], rule: BitDepthRule, constant: int | None = None, unmappable: int = 0
) -> str:
    """How many of the files with these modes are read as they are and how many go through ``rule``; with
    ``constant`` also how many of those are constant images (all 0). ``unmappable`` of the 16-bit or float
    files hold samples the rule cannot map: they are bad, counted apart, never as mapped."""
    modes = list(modes)
    high = sum(is_high_bit(m) for m in modes)
    note = f", {constant} of them constant (mapped to 0)" if constant else ""
    bad = (
        f"; {unmappable} 16-bit or float files it cannot map (NaN, infinite or out of range): bad"
        if unmappable
        else ""
    )
    return (
        f"{len(modes) - high} 8-bit files read as they are; {high - unmappable} 16-bit or float files mapped by "
        f"{rule.describe()} ({KEY}.mode={rule.mode}){note}{bad}"
    )


def summary_lines(infos: Iterable[ImageInfo]) -> list[str]:
    """Counts per (format, mode, bits) and the range of widths and heights, to compare with the docs."""
    infos = list(infos)
    if not infos:
        return []
    kinds = Counter((i.format, i.mode, i.bits) for i in infos)
    lines = [f"{len(infos)} files read:"]
    lines += [f"  {fmt} {mode} {bits}-bit: {n}" for (fmt, mode, bits), n in sorted(kinds.items())]
    widths, heights = [i.width for i in infos], [i.height for i in infos]
    lines.append(f"  width {min(widths)}..{max(widths)}, height {min(heights)}..{max(heights)}")
    return lines
