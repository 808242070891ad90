"""RGBNT100 (vehicles): ``RGBNT100/rgbir/{bounding_box_train,query,bounding_box_test}/PPPP_cCCCC_III.jpg``.

Each file is one 768x128 JPEG holding the RGB | NIR | TIR panels side by side (docs/datasets.md, "RGBNT100"),
so every record repeats the same path three times and is marked ``stitched``. Cameras are 1..8 in names, 0..7
here.
"""

from __future__ import annotations

import re

from mdreid.data.readers.common import Found, Grammar, Layout, Scan, one_based_camera

PANEL_SIZE = (256, 128)  # (width, height) of one modality's panel
STITCHED_SIZE = (3 * PANEL_SIZE[0], PANEL_SIZE[1])  # (width, height) of every file: RGB | NIR | TIR
# PIL crop boxes (left, top, right, bottom) of the RGB, NIR and TIR panels
PANEL_BOXES: tuple[tuple[int, int, int, int], ...] = tuple(
    (m * PANEL_SIZE[0], 0, (m + 1) * PANEL_SIZE[0], PANEL_SIZE[1]) for m in range(3)
)
SPLIT_PARENT = "rgbir"  # the split folders live one level down, in RGBNT100/rgbir/

GRAMMAR = Grammar(
    form="PPPP_cCCCC_III.jpg",
    pattern=re.compile(r"^(\d{4})_c(\d{4})_(\d{3})\.jpg$", re.ASCII),
    fields=one_based_camera,
)


def read_split(scan: Scan, folder: str) -> list[Found]:
    """One flat folder of stitched files: the 'three modality folders' are the same folder."""
    return scan.triplets((folder, folder, folder))


LAYOUT = Layout(
    name="rgbnt100",
    folders=(f"RGBNT100/{SPLIT_PARENT}",),
    splits={"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"},
    grammar=GRAMMAR,
    junk_rule="camera",
    read_split=read_split,
    stitched=True,
    val_query_every=5,  # the query folder holds one image in five of every gallery (identity, camera) group
)
