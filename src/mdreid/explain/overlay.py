"""A Grad-CAM map drawn over the image the model saw (the input size, before normalisation)."""

from __future__ import annotations

import numpy as np
from PIL import Image


def model_view(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``image`` resized to the model's (H, W) input, as the evaluation transform resizes it."""
    return image.convert("RGB").resize((size[1], size[0]), Image.Resampling.BILINEAR)


def overlay(view: Image.Image, cam: np.ndarray, image_weight: float = 0.5) -> Image.Image:
    """The map in the JET colour map blended over ``view`` (same size as the map)."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    if cam.shape != (view.height, view.width):
        raise ValueError(f"a {cam.shape} map cannot overlay a {view.height}x{view.width} image")
    rgb = np.asarray(view, dtype=np.float32) / 255.0
    return Image.fromarray(show_cam_on_image(rgb, cam, use_rgb=True, image_weight=image_weight))
