"""One image in any accepted form -> the RGB PIL image the evaluation transform reads.

The rules are those of an image file in evaluation (``data.bit_depth``), so an array and the file it came
from give the same features:

- a path: decoded exactly as evaluation decodes a dataset file (``open_rgb``);
- a PIL image: 8-bit modes through ``convert("RGB")``, 16-bit and float modes through the checkpoint's
  high-bit-depth rule;
- a numpy array: ``uint8`` ``(H, W)`` grey or ``(H, W, 3)`` RGB is 8-bit; a one-channel ``(H, W)`` array of
  any other integer or float dtype (a thermal camera's counts or degrees) goes through the rule. A colour
  array of another dtype is ambiguous (0..1 or 0..255?) and refused;
- a torch tensor: read as the numpy array of the same values, channels first (``(3, H, W)``, ``(1, H, W)``)
  or plain ``(H, W)``.

Anything else is an error naming the argument and the item, never a guess.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from mdreid.data.bit_depth import BitDepthRule, to_rgb
from mdreid.data.triplet_dataset import read_image
from mdreid.process.errors import MDReIDError

ImageLike = Any  # str | Path | PIL.Image.Image | np.ndarray | torch.Tensor


def _array_image(array: np.ndarray, where: str, rule: BitDepthRule) -> Image.Image:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2 and min(array.shape) > 0:
        if array.dtype == np.uint8:
            return Image.fromarray(array, mode="L").convert("RGB")
        if array.dtype.kind in "iuf":
            return Image.fromarray(rule.to_8bit(array, where)).convert("RGB")
    elif array.ndim == 3 and array.shape[2] == 3 and min(array.shape) > 0:
        if array.dtype == np.uint8:
            return Image.fromarray(np.ascontiguousarray(array), mode="RGB")
        raise MDReIDError(
            f"{where}: a colour array must be uint8 (H, W, 3), got {array.dtype}; a high-bit-depth image must "
            "have one channel (H, W), as thermal cameras write it; convert colour images to 8-bit first"
        )
    raise MDReIDError(
        f"{where}: an image array must be (H, W) or (H, W, 3) (channels last; a tensor channels first), "
        f"got shape {tuple(array.shape)} {array.dtype}"
    )


def to_pil(item: ImageLike, where: str, rule: BitDepthRule) -> Image.Image:
    """``item`` as the RGB image evaluation would have decoded; ``where`` names it in errors."""
    if isinstance(item, (str, os.PathLike)):
        path = str(Path(item).expanduser())
        if not Path(path).is_file():
            raise MDReIDError(f"{where}: {path!r} is not a file")
        return read_image(path, rule)
    if isinstance(item, Image.Image):
        return to_rgb(item, where, rule)
    if isinstance(item, torch.Tensor):
        tensor = item.detach().cpu()
        if tensor.ndim == 3:
            tensor = tensor.permute(1, 2, 0)
        return _array_image(tensor.numpy(), where, rule)
    if isinstance(item, np.ndarray):
        return _array_image(item, where, rule)
    raise MDReIDError(
        f"{where}: cannot read a {type(item).__name__} as an image; give a path, a PIL image, a numpy array "
        "or a torch tensor"
    )
