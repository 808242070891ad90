"""MSVR310 (vehicles): ``MSVR310/{bounding_box_train,query3,bounding_box_test}/VVVV/{vis,ni,th}/VVVV_sSSS_vC_III.jpg``.

The scene id ``SSS`` is kept because evaluation removes same-vehicle, same-scene gallery entries whatever the
view (docs/datasets.md, "MSVR310"). Views are already 0-based in names. MambaPro's lowercase ``msvr310/`` is
accepted.
"""

from __future__ import annotations

import os
import re

from mdreid.data.readers.common import Found, Grammar, Layout, Scan, list_id_dirs

MODALITY_DIRS = ("vis", "ni", "th")

GRAMMAR = Grammar(
    form="VVVV/{vis,ni,th}/VVVV_sSSS_vC_III.jpg",
    pattern=re.compile(r"^(\d{4})_s(\d{3})_v(\d)_(\d{3})\.jpg$", re.ASCII),
    fields=lambda m: (int(m[1]), int(m[3]), int(m[2])),
)


def read_split(scan: Scan, folder: str) -> list[Found]:
    """One folder per vehicle id; each filename must start with its folder's id."""
    found: list[Found] = []
    for vid in list_id_dirs(folder):
        dirs = (
            os.path.join(folder, vid, MODALITY_DIRS[0]),
            os.path.join(folder, vid, MODALITY_DIRS[1]),
            os.path.join(folder, vid, MODALITY_DIRS[2]),
        )
        found.extend(scan.triplets(dirs, folder_id=vid))
    return found


LAYOUT = Layout(
    name="msvr310",
    folders=("MSVR310", "msvr310"),
    splits={"train": "bounding_box_train", "query": "query3", "gallery": "bounding_box_test"},
    grammar=GRAMMAR,
    junk_rule="scene",
    read_split=read_split,
)
