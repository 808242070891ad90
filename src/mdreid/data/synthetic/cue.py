"""The known-region identity cue (``generate(..., cue=True)``): a check that explanations point where the
identity is.

With the cue on, an image's body is drawn from a fresh random identity per shot, so the body says nothing
about who it is, and the identity's only mark is a two-colour patch in a fixed box (``CUE_BOX``, fractions of
the image) painted in every modality with that identity's own colours. A model can only match identities by
the box, so its maps should put their mass there. Without the option nothing here is drawn from.
"""

from __future__ import annotations

import numpy as np

from mdreid.data.synthetic.streams import keyed_rng

CUE_ROLE = 4  # a role of its own in the generator's keys (after IDENTITY, SETTING, PLAN, IMAGE)
# (top, left, bottom, right) as fractions of the image: on a 2:1 person crop, a patch-aligned eighth of it
CUE_BOX: tuple[float, float, float, float] = (0.125, 0.25, 0.375, 0.75)


def body_key(seed: int, source: int, shot_key: tuple[int, ...]) -> tuple[int, ...]:
    """The key of a shot's random body identity."""
    return (seed, source, CUE_ROLE, 0, *shot_key)


def box_pixels(
    height: int, width: int, box: tuple[float, float, float, float] = CUE_BOX
) -> tuple[slice, slice]:
    """The rows and columns of ``box`` in an image of this size."""
    top, left, bottom, right = box
    return slice(round(top * height), round(bottom * height)), slice(
        round(left * width), round(right * width)
    )


def paint_cue(images: tuple[np.ndarray, ...], seed: int, source: int, pid: int) -> tuple[np.ndarray, ...]:
    """The images with identity ``pid``'s patch: per modality two colours, top half and bottom half."""
    colours = keyed_rng(seed, source, CUE_ROLE, 1, pid).integers(0, 256, (len(images), 2, 3), dtype=np.uint8)
    out = []
    for image, (upper, lower) in zip(images, colours, strict=True):
        image = image.copy()
        rows, cols = box_pixels(*image.shape[:2])
        middle = (rows.start + rows.stop) // 2
        grey = image.ndim == 3 and bool(
            (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()
        )
        for part, colour in ((slice(rows.start, middle), upper), (slice(middle, rows.stop), lower)):
            image[part, cols] = colour.mean().astype(np.uint8) if grey else colour
        out.append(image)
    return tuple(out)
