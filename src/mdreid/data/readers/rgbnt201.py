"""RGBNT201 (persons): ``RGBNT201/{train_171,test}/{RGB,NI,TI}/PPPPPP_camC_S_FF.jpg``.

``test`` is both query and gallery (every public code base does this; docs/datasets.md, "RGBNT201"), so the
Benchmark holds one list for both. Cameras are 1..4 in names and 0..3 here; the ``S`` flag is ignored like
upstream.
"""

from __future__ import annotations

import re
from functools import partial

from mdreid.data.readers.common import Grammar, Layout, flat_modality_folders, one_based_camera

MODALITY_DIRS = ("RGB", "NI", "TI")

GRAMMAR = Grammar(
    form="PPPPPP_camC_S_FF.jpg",
    pattern=re.compile(r"^(\d{6})_cam(\d)_(\d)_(\d{2})\.jpg$", re.ASCII),
    fields=one_based_camera,
)


# one flat folder per modality with identical names
read_split = partial(flat_modality_folders, names=MODALITY_DIRS)


LAYOUT = Layout(
    name="rgbnt201",
    folders=("RGBNT201",),
    splits={"train": "train_171", "query": "test", "gallery": "test"},
    grammar=GRAMMAR,
    junk_rule="camera",
    read_split=read_split,
)
