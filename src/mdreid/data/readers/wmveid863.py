"""WMVEID863 (vehicles in the wild), in the layout the official MDReID code reads as ``MSVWild863``:
``MSVWild863/{train,query,test}/{vis,ni,th}/PPPP_camC_<rest>.jpg`` (``WMVEID863/`` is accepted as the top
folder too). ``test`` is the gallery.

The three modality folders are flat and hold identically named files, like RGBNT201's. The name rule is the
official parser's: the identity is the first ``_`` field (digits), the camera the digit after ``cam`` in the
second field, counted from 1 (0-based here). The rest of the name is free (word characters). Junk rule:
same identity and same camera (docs/datasets.md, "WMVEID863": what was verified and what was inferred).
The per-identity release (``<split>/<id>/{vis,ni,th}/``), read by other code bases, is refused with a note:
its file-name rule is not established.
"""

from __future__ import annotations

import os
import re

from mdreid.data.readers.common import (
    Found,
    Grammar,
    Layout,
    Scan,
    flat_modality_folders,
    list_id_dirs,
    one_based_camera,
)
from mdreid.process.errors import MDReIDError

MODALITY_DIRS = ("vis", "ni", "th")

GRAMMAR = Grammar(
    form="PPPP_camC_<rest>.jpg (PPPP: 1-6 digits; C: camera from 1; rest: letters, digits, _)",
    pattern=re.compile(r"^(\d{1,6})_cam(\d)(?:_\w+)?\.jpg$", re.ASCII),
    fields=one_based_camera,
)


def read_split(scan: Scan, folder: str) -> list[Found]:
    """One flat folder per modality with identical names; id folders instead mean the per-identity release."""
    if not os.path.isdir(os.path.join(folder, MODALITY_DIRS[0])) and list_id_dirs(folder):
        raise MDReIDError(
            f"{scan.dataset}: {folder} holds one folder per vehicle id (the per-identity release), not the flat "
            f"{'/'.join(MODALITY_DIRS)} folders mdreid reads; its file names follow another, unverified rule, so "
            "it is not read: arrange it as <split>/{vis,ni,th}/PPPP_camC_<rest>.jpg, or list it in a manifest "
            "(docs/manifest.md)"
        )
    return flat_modality_folders(scan, folder, MODALITY_DIRS)


LAYOUT = Layout(
    name="wmveid863",
    folders=("MSVWild863", "WMVEID863"),
    splits={"train": "train", "query": "query", "gallery": "test"},
    grammar=GRAMMAR,
    junk_rule="camera",
    read_split=read_split,
)
