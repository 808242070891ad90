"""RGBNT201 (persons): ``RGBNT201/{train_171,test}/{RGB,NI,TI}/PPPPPP_camC_S_FF.jpg``.

``test`` is both query and gallery (every public code base does this; docs/datasets.md, "RGBNT201"), so the
Benchmark holds one list for both. Cameras are 1..4 in names and 0..3 here; the ``S`` flag is ignored like
upstream.
"""

from __future__ import annotations

import os
import re

from mdreid.data.readers.common import Found, Grammar, Layout, Scan, one_based_camera, require_dir

MODALITY_DIRS = ("RGB", "NI", "TI")

GRAMMAR = Grammar(
    form="PPPPPP_camC_S_FF.jpg",
    pattern=re.compile(r"^(\d{6})_cam(\d)_(\d)_(\d{2})\.jpg$", re.ASCII),
    fields=one_based_camera,
)


def read_split(scan: Scan, folder: str) -> list[Found]:
    """One flat folder per modality with identical names; a missing modality folder means a broken copy."""
    dirs = tuple(require_dir(scan.dataset, os.path.join(folder, m)) for m in MODALITY_DIRS)
    return scan.triplets(dirs)  # type: ignore[arg-type]


LAYOUT = Layout(
    name="rgbnt201",
    folders=("RGBNT201",),
    splits={"train": "train_171", "query": "test", "gallery": "test"},
    grammar=GRAMMAR,
    junk_rule="camera",
    read_split=read_split,
)
