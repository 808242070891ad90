"""A copy of a manifest whose NIR and TIR images are grey files as a thermal or NIR camera writes them: 8-bit
grey, 16-bit grey (each value ``v`` stored as ``v * 257``, so 0..255 becomes 0..65535), or a constant 255 image
(what PIL's clipping ``convert("RGB")`` made of a 16-bit file). It checks that the high-bit-depth rule
(``mdreid.data.bit_depth``) keeps what the 8-bit files carry: tests and ``scripts/high_bit_depth_check.py``.

Each 8-bit source is first made grey (``convert("L")``), since a 16-bit file has one channel; the ``grey8``
copy is the reference the 16-bit one is compared with. RGB files are not copied: the rows name the originals.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from mdreid.data.readers.manifest import MODALITY_COLUMNS, load_manifest, manifest_rows, write_rows
from mdreid.process.errors import MDReIDError

KINDS = ("grey8", "grey16", "clipped")
COPIED = ("nir", "tir")


def grey_copy(source: str, target: Path, kind: str) -> None:
    """Write ``source`` as a grey PNG of ``kind`` at ``target``."""
    with Image.open(source) as img:
        grey = np.asarray(img.convert("L"))
    if kind == "grey8":
        out = Image.fromarray(grey)
    elif kind == "grey16":
        out = Image.fromarray(grey.astype(np.uint16) * 257)
    else:  # clipped: every sample of a 16-bit file is above 255 but black's, so the old reading was white
        out = Image.fromarray(np.full_like(grey, 255))
    target.parent.mkdir(parents=True, exist_ok=True)
    out.save(target)


def high_bit_copy(manifest: str | Path, out: str | Path, kind: str = "grey16") -> Path:
    """Write ``out`` (a manifest) naming the original RGB files and grey ``kind`` copies of the NIR and TIR
    ones (in ``out``'s folder, under ``nir/`` and ``tir/``); returns ``out``."""
    if kind not in KINDS:
        raise MDReIDError(f"kind={kind!r}: use one of {', '.join(KINDS)}")
    out = Path(out).expanduser().absolute()
    bench = load_manifest(manifest)
    rows = manifest_rows(bench, out.parent)
    records = [*bench.train, *bench.query, *([] if bench.query_is_gallery else bench.gallery)]  # rows' order
    if any(r.stitched for r in records):
        raise MDReIDError(f"{manifest}: stitched R|N|T strips cannot be copied per modality")
    for i, (row, record) in enumerate(zip(rows, records, strict=True)):
        for column, source in zip(MODALITY_COLUMNS, record.paths, strict=True):
            if column in COPIED and source:
                target = out.parent / column / f"{i:06d}.png"
                grey_copy(source, target, kind)
                row[column] = str(target.relative_to(out.parent))
    return write_rows(rows, out)
