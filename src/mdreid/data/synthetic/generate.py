"""Synthetic tri-modal benchmarks in the exact folder layout and filename grammar of RGBNT201, RGBNT100 and
MSVR310, so that the real readers load them unchanged (layouts in :mod:`mdreid.data.synthetic.layouts`).

Presets (identities split 2/3 train, 1/3 test; triplets per identity vary by +-25% around the figure shown;
RGBNT100 uses 5 triplets per (id, camera) instead, i.e. 10-20 per id):

=======  ======================  ===========  ==========  ===============================================
preset   identities (train/test) triplets/id  triplets    used by
=======  ======================  ===========  ==========  ===============================================
tiny     24 (16 / 8)             ~10          ~240        tests and ``make demo`` (a few seconds, 2 cores)
bench    90 (60 / 30)            ~14          ~1,260      the ablation study (well under a minute)
=======  ======================  ===========  ==========  ===============================================

Every image is drawn from a Generator keyed by (seed, benchmark, role, pid, camera/scene, index), so the
bytes do not depend on generation order. ``coupling`` sets how much NIR/TIR appearance follows RGB
(:mod:`mdreid.data.synthetic.appearance`). The copy is rendered into a hidden sibling folder and renamed into
place at the end, so an interrupted run never leaves a complete-looking half dataset; the recipe it was made
from is stored with it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mdreid.data.readers import DATASETS, benchmark_folder
from mdreid.data.readers.common import check_choice
from mdreid.data.readers.rgbnt100 import PANEL_SIZE
from mdreid.data.synthetic.appearance import Identity, make_identity
from mdreid.data.synthetic.cameras import Setting, make_setting
from mdreid.data.synthetic.cue import body_key, paint_cue
from mdreid.data.synthetic.layouts import KINDS, MAX_IDS, PLANNERS, Plan
from mdreid.data.synthetic.rendering import render_triplet
from mdreid.data.synthetic.streams import IDENTITY, IMAGE, SETTING, SOURCES
from mdreid.process.errors import MDReIDError


@dataclass(frozen=True)
class Preset:
    ids: int  # identities in all, split 2/3 train and 1/3 test
    per_id: int  # typical triplets per identity


PRESETS: dict[str, Preset] = {"tiny": Preset(ids=24, per_id=10), "bench": Preset(ids=90, per_id=14)}

MIN_IDS = 6  # at least 2 test ids, so MSVR310 has a multi-scene query id and a single-scene distractor
# the share of materials whose NIR/TIR look follows RGB; fixed before any variant was compared
DEFAULT_COUPLING = 0.5
JPEG_QUALITY = 90
RECIPE_FILE = "SYNTHETIC.json"  # in the benchmark folder; the readers ignore stray files


def _split(like: str, ids: int) -> tuple[int, int]:
    """(train, test) identity counts: 2/3 and 1/3 of ``ids``, within what the benchmark's names can hold."""
    if isinstance(ids, bool) or not isinstance(ids, int) or not MIN_IDS <= ids <= MAX_IDS[like]:
        raise MDReIDError(
            f"invalid ids={ids!r} for {like}: use an integer from {MIN_IDS} to {MAX_IDS[like]} "
            "(or leave it unset to use the preset's count)"
        )
    n_test = max(2, round(ids / 3))
    return ids - n_test, n_test


def _save(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, quality=JPEG_QUALITY)


def _write(plan: Plan, like: str, seed: int, coupling: float, folder: Path, cue: bool = False) -> None:
    """Render every shot into ``folder`` (stitching RGBNT100 panels), then make the query copies; with ``cue``
    the identity is only in a fixed patch (:mod:`mdreid.data.synthetic.cue`)."""
    kind, code = KINDS[like], SOURCES[like]
    identities: dict[int, Identity] = {}
    settings: dict[int, Setting] = {}
    for shot in plan.shots:
        if shot.pid not in identities:
            identities[shot.pid] = make_identity(kind, (seed, code, IDENTITY, shot.pid), coupling)
        if shot.setting not in settings:
            settings[shot.setting] = make_setting(kind, (seed, code, SETTING, shot.setting))
        who = make_identity(kind, body_key(seed, code, shot.key), coupling) if cue else identities[shot.pid]
        images = render_triplet(who, settings[shot.setting], (seed, code, IMAGE, *shot.key)).images
        if cue:
            images = paint_cue(images, seed, code, shot.pid)
        if len(shot.files) == 1:  # RGBNT100: native crops resized to fixed panels, as the real files were
            panels = [np.asarray(Image.fromarray(im).resize(PANEL_SIZE, Image.BILINEAR)) for im in images]
            _save(folder / shot.files[0], np.concatenate(panels, axis=1))
        else:
            for name, image in zip(shot.files, images, strict=True):
                _save(folder / name, image)
    for src, dst in plan.copies:
        (folder / dst).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / src, folder / dst)


def recipe(
    like: str, ids: int | None, seed: int, preset: str, coupling: float = DEFAULT_COUPLING, cue: bool = False
) -> dict[str, Any]:
    """What a synthetic copy was generated from; stored with it so a copy is never mistaken for another."""
    n_ids = PRESETS[preset].ids if ids is None else ids
    made = {"like": like, "preset": preset, "ids": n_ids, "seed": seed, "coupling": float(coupling)}
    return {**made, "cue": True} if cue else made


def read_recipe(benchmark_dir: str | Path) -> dict[str, Any] | None:
    """The recipe stored in a generated benchmark folder; None for real data (or a copy that predates it).

    Copies written before the coupling knob existed had independent modalities: coupling 0.
    """
    path = Path(benchmark_dir) / RECIPE_FILE
    return {"coupling": 0.0, **json.loads(path.read_text())} if path.is_file() else None


def check_coupling(coupling: Any) -> float:
    """``coupling`` as a float in [0, 1], or an MDReIDError naming the key."""
    if isinstance(coupling, bool) or not isinstance(coupling, int | float) or not 0.0 <= coupling <= 1.0:
        raise MDReIDError(
            f"invalid data.synth.coupling={coupling!r}: use a number from 0 (independent modalities) to 1"
        )
    return float(coupling)


def generate(
    like: str,
    out: str | Path,
    ids: int | None = None,
    seed: int = 0,
    preset: str = "tiny",
    coupling: float = DEFAULT_COUPLING,
    cue: bool = False,
) -> Path:
    """Write a synthetic copy of benchmark ``like`` into ``out`` and return ``out`` (the data root).

    ``ids`` overrides the preset's identity count; ``coupling`` is the share of materials whose NIR/TIR look
    follows RGB; ``cue`` puts the identity only in a fixed patch (for checking explanations; the default
    output is unchanged). Raises MDReIDError for an unknown ``like``/``preset``, bad ``ids``/``seed``/``coupling``, or
    when the benchmark folder already exists under ``out`` (the caller decides).
    """
    like = check_choice("like", str(like).lower(), DATASETS)
    check_choice("preset", preset, tuple(PRESETS))
    coupling = check_coupling(coupling)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise MDReIDError(f"invalid seed={seed!r}: use a non-negative integer")
    n_train, n_test = _split(like, PRESETS[preset].ids if ids is None else ids)
    out = Path(out)
    target = out / benchmark_folder(like)
    if target.exists():
        raise MDReIDError(f"{target} already exists: delete it or choose another output folder")
    plan = PLANNERS[like](seed, n_train, n_test, PRESETS[preset].per_id)
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=out))
    try:
        _write(plan, like, seed, coupling, scratch, cue)
        (scratch / RECIPE_FILE).write_text(json.dumps(recipe(like, ids, seed, preset, coupling, cue)) + "\n")
        try:
            os.rename(scratch, target)
        except OSError as err:
            if target.exists():
                raise MDReIDError(
                    f"{target} appeared while generating: delete it or choose another output folder"
                ) from err
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out
