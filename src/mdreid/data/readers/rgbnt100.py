"""RGBNT100 (vehicles): ``RGBNT100/rgbir/{bounding_box_train,query,bounding_box_test}/PPPP_cCCCC_III.jpg``.

Each file is one 768x128 JPEG holding the RGB | NIR | TIR panels side by side (datasets.md §3.1), so every
record repeats the same path three times and is marked ``stitched``. Cameras are 1..8 in names, 0..7 here.
"""

from __future__ import annotations

import re

from mdreid.data.readers.common import Found, Grammar, Layout, Scan, one_based_camera

STITCHED_SIZE = (768, 128)  # (width, height) of every file: three 256x128 panels

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
    folders=("RGBNT100/rgbir",),
    splits={"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"},
    grammar=GRAMMAR,
    junk_rule="camera",
    read_split=read_split,
    stitched=True,
)
