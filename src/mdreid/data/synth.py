"""Synthetic tri-modal benchmarks in the exact folder layout and filename grammar of RGBNT201, RGBNT100 and
MSVR310 (datasets.md §2-§4, §8), so that the real readers load them unchanged. Images come from
:mod:`mdreid.data.render`: a shared shape cue plus independent RGB/NIR/TIR appearance cues per identity.

Presets (identities split 2/3 train, 1/3 test; triplets per identity vary by +-25% around the figure shown;
RGBNT100 uses 5 triplets per (id, camera) instead, i.e. 10-20 per id):

=======  ======================  ===========  ==========  ===============================================
preset   identities (train/test) triplets/id  triplets    used by
=======  ======================  ===========  ==========  ===============================================
tiny     24 (16 / 8)             ~10          ~240        tests and ``make demo`` (a few seconds, 2 cores)
bench    90 (60 / 30)            ~14          ~1,260      the ablation study (well under a minute)
=======  ======================  ===========  ==========  ===============================================

What each copy looks like (``ids`` overrides the preset's identity count):

- RGBNT201 (persons, 96-160 x 40-88 portrait crops): ``RGBNT201/{train_171,test}/{RGB,NI,TI}/PPPPPP_camC_S_FF.jpg``.
  Train pids 1..n_train, cameras 1-4, ``S`` fixed per id and 1 for every id seen by cameras 3/4; test pids
  follow, each in both cam1 and cam2 with ``S=0``; ``FF`` runs from 00 in each (pid, cam, S) group.
- RGBNT100 (vehicles): ``RGBNT100/rgbir/{bounding_box_train,query,bounding_box_test}/PPPP_cCCCC_III.jpg``,
  each one 768x128 JPEG of three 256x128 panels RGB | NIR | TIR. Train pids odd, test pids even (501.. while
  they fit under 600), 5 images per (pid, camera), every test id in >= 2 cameras; ``query/`` holds copies of
  the ``III=000`` image of every test (pid, camera) group (1 of every 5).
- MSVR310 (vehicles, ~2:1 landscape crops 112-176 wide):
  ``MSVR310/{bounding_box_train,query3,bounding_box_test}/VVVV/{vis,ni,th}/VVVV_sSSS_vC_III.jpg``.
  Each id appears in 1-3 scenes and 1-3 views per scene; ``III`` runs per vehicle across scenes. Half the
  test ids are multi-scene (``query3/`` copies all their gallery images), the rest are single-scene
  gallery distractors.

Every image is drawn from a Generator keyed by (seed, benchmark, split, pid, camera/scene, index), so the
bytes do not depend on generation order. The copy is rendered into a hidden sibling folder and renamed into
place at the end, so an interrupted run never leaves a complete-looking half dataset.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mdreid.data.readers import DATASETS, benchmark_folder, split_folders
from mdreid.data.readers import msvr310 as msvr310_reader
from mdreid.data.readers import rgbnt201 as rgbnt201_reader
from mdreid.data.readers.common import check_choice
from mdreid.data.render import Identity, Setting, keyed_rng, make_identity, make_setting, render_triplet
from mdreid.errors import MDReIDError


@dataclass(frozen=True)
class Preset:
    ids: int  # identities in all, split 2/3 train and 1/3 test
    per_id: int  # typical triplets per identity


PRESETS: dict[str, Preset] = {"tiny": Preset(ids=24, per_id=10), "bench": Preset(ids=90, per_id=14)}

MIN_IDS = 6  # at least 2 test ids, so MSVR310 has a multi-scene query id and a single-scene distractor
_CODES = {"rgbnt201": 201, "rgbnt100": 100, "msvr310": 310}  # separates the random streams of benchmarks
_KINDS = {"rgbnt201": "person", "rgbnt100": "vehicle", "msvr310": "vehicle"}
_IDENTITY, _SETTING, _PLAN, _IMAGE = range(4)  # roles inside random keys
RGBNT100_PREFIX = "rgbir"  # RGBNT100's splits live one level down, in RGBNT100/rgbir/
RGBNT100_GROUP = 5  # images per (pid, camera); the query keeps 1 of them
PANEL = (256, 128)  # (W, H) of one RGBNT100 panel; three side by side make the 768x128 file
JPEG_QUALITY = 90
RECIPE_FILE = "SYNTHETIC.json"  # in the benchmark folder; the readers ignore stray files


@dataclass(frozen=True)
class Shot:
    """One triplet to render: where it goes, whose it is, which camera/scene setting sees it."""

    files: tuple[str, ...]  # under the benchmark folder: one stitched file, or the RGB, NIR, TIR files
    pid: int
    setting: int  # camera (RGBNT201: camera and S; MSVR310: scene and view): background, light, viewpoint
    key: tuple[int, ...]  # the image's own random key


@dataclass
class Plan:
    shots: list[Shot] = field(default_factory=list)
    copies: list[tuple[str, str]] = field(default_factory=list)  # (gallery file, query file)


def _count(rng: np.random.Generator, per_id: int) -> int:
    """Triplets of one identity: ``per_id`` +-25%."""
    return int(rng.integers(round(0.75 * per_id), round(1.25 * per_id) + 1))


def _spread(rng: np.random.Generator, total: int, groups: int, least: int) -> list[int]:
    """Split ``total`` images over ``groups`` at random, each getting at least ``least``."""
    total = max(total, groups * least)
    extra = np.bincount(rng.integers(0, groups, total - groups * least), minlength=groups)
    return [least + int(e) for e in extra]


def _plan_rgbnt201(seed: int, n_train: int, n_test: int, per_id: int) -> Plan:
    """Every third train id has S=1 and is the only kind seen by cameras 3/4; test ids are in cam1 and cam2."""
    folders = split_folders("rgbnt201")
    plan = Plan()
    for i in range(n_train + n_test):
        pid, test = i + 1, i >= n_train
        rng = keyed_rng(seed, _CODES["rgbnt201"], _PLAN, pid)
        flag = int(not test and i % 3 == 2)
        if test:
            cams: tuple[int, ...] = (1, 2)
        else:
            options = ((3,), (4,), (1, 3), (2, 4), (1, 4)) if flag else ((1,), (2,), (1, 2))
            cams = options[rng.integers(len(options))]
        folder = folders["gallery" if test else "train"]
        for cam, n in zip(cams, _spread(rng, _count(rng, per_id), len(cams), 2), strict=True):
            for ff in range(n):  # < 30 for every preset: FF has two digits
                name = f"{pid:06d}_cam{cam}_{flag}_{ff:02d}.jpg"
                files = tuple(f"{folder}/{m}/{name}" for m in rgbnt201_reader.MODALITY_DIRS)
                plan.shots.append(Shot(files, pid, 2 * cam + flag, (int(test), pid, cam, flag, ff)))
    return plan


def _plan_rgbnt100(seed: int, n_train: int, n_test: int, per_id: int) -> Plan:
    """Odd train / even test pids in 1..600; test cameras are drawn among those train has seen (SIE size)."""
    folders = {role: f"{RGBNT100_PREFIX}/{f}" for role, f in split_folders("rgbnt100").items()}
    base = min(250, 300 - max(n_train, n_test))  # 501, 502, ... while the ids fit, lower otherwise
    plan = Plan()
    train_cams: set[int] = set()
    for i in range(n_train + n_test):
        test = i >= n_train
        pid = 2 * (base + i - n_train) + 2 if test else 2 * (base + i) + 1
        rng = keyed_rng(seed, _CODES["rgbnt100"], _PLAN, pid)
        n_cams = int(np.clip(round(_count(rng, per_id) / RGBNT100_GROUP), 2, 8))
        if test:
            pool = sorted(train_cams)
            cams = sorted(rng.choice(pool, min(n_cams, len(pool)), replace=False).tolist())
        else:
            cams = sorted((3 * i + k) % 8 + 1 for k in range(n_cams))
            train_cams.update(cams)
        folder = folders["gallery" if test else "train"]
        for cam in cams:
            for idx in range(RGBNT100_GROUP):
                name = f"{pid:04d}_c{cam:04d}_{idx:03d}.jpg"
                plan.shots.append(Shot((f"{folder}/{name}",), pid, cam, (int(test), pid, cam, idx)))
                if test and idx == 0:
                    plan.copies.append((f"{folder}/{name}", f"{folders['query']}/{name}"))
    return plan


def _plan_msvr310(seed: int, n_train: int, n_test: int, per_id: int) -> Plan:
    """Ids in 1-3 scenes; test ids alternate multi-scene (queried) and single-scene (distractors)."""
    folders = split_folders("msvr310")
    n_scenes = int(np.clip((n_train + n_test) // 3, 4, 31))
    plan = Plan()
    train_views: set[int] = set()
    for i in range(n_train + n_test):
        pid, test = i + 1, i >= n_train
        rng = keyed_rng(seed, _CODES["msvr310"], _PLAN, pid)
        multi = (i - n_train) % 2 == 0 if test else bool(rng.random() < 0.4)
        scenes = sorted(rng.choice(n_scenes, int(rng.integers(2, 4)) if multi else 1, replace=False).tolist())
        pool = sorted(train_views) if test else list(range(8))
        index = 0
        folder = folders["gallery" if test else "train"]
        for scene, n in zip(scenes, _spread(rng, _count(rng, per_id), len(scenes), 2), strict=True):
            seen = rng.choice(pool, min(int(rng.integers(1, 4)), len(pool)), replace=False)
            for view in sorted(rng.choice(seen, n).tolist()):
                name = f"{pid:04d}_s{scene:03d}_v{view}_{index:03d}.jpg"
                files = tuple(f"{folder}/{pid:04d}/{m}/{name}" for m in msvr310_reader.MODALITY_DIRS)
                plan.shots.append(Shot(files, pid, 8 * scene + view, (int(test), pid, scene, view, index)))
                if test and multi:
                    query = folders["query"]
                    plan.copies += [(f, query + f[len(folder) :]) for f in files]
                if not test:
                    train_views.add(view)
                index += 1
    return plan


_PLANNERS: dict[str, Callable[[int, int, int, int], Plan]] = {
    "rgbnt201": _plan_rgbnt201,
    "rgbnt100": _plan_rgbnt100,
    "msvr310": _plan_msvr310,
}
_MAX_IDS = {"rgbnt201": 999_999, "rgbnt100": 450, "msvr310": 9_999}  # what the filename grammars allow


def _split(like: str, ids: int) -> tuple[int, int]:
    """(train, test) identity counts: 2/3 and 1/3 of ``ids``, within what the benchmark's names can hold."""
    if isinstance(ids, bool) or not isinstance(ids, int) or not MIN_IDS <= ids <= _MAX_IDS[like]:
        raise MDReIDError(
            f"invalid ids={ids!r} for {like}: use an integer from {MIN_IDS} to {_MAX_IDS[like]} "
            "(or leave it unset to use the preset's count)"
        )
    n_test = max(2, round(ids / 3))
    return ids - n_test, n_test


def _save(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, quality=JPEG_QUALITY)


def _write(plan: Plan, like: str, seed: int, folder: Path) -> None:
    """Render every shot into ``folder`` (stitching RGBNT100 panels), then make the query copies."""
    kind, code = _KINDS[like], _CODES[like]
    identities: dict[int, Identity] = {}
    settings: dict[int, Setting] = {}
    for shot in plan.shots:
        if shot.pid not in identities:
            identities[shot.pid] = make_identity(kind, (seed, code, _IDENTITY, shot.pid))
        if shot.setting not in settings:
            settings[shot.setting] = make_setting(kind, (seed, code, _SETTING, shot.setting))
        images = render_triplet(
            identities[shot.pid], settings[shot.setting], (seed, code, _IMAGE, *shot.key)
        ).images
        if len(shot.files) == 1:  # RGBNT100: native crops resized to fixed panels, as the real files were
            panels = [np.asarray(Image.fromarray(im).resize(PANEL, Image.BILINEAR)) for im in images]
            _save(folder / shot.files[0], np.concatenate(panels, axis=1))
        else:
            for name, image in zip(shot.files, images, strict=True):
                _save(folder / name, image)
    for src, dst in plan.copies:
        (folder / dst).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / src, folder / dst)


def recipe(like: str, ids: int | None, seed: int, preset: str) -> dict[str, Any]:
    """What a synthetic copy was generated from; stored with it so a copy is never mistaken for another."""
    return {"like": like, "preset": preset, "ids": PRESETS[preset].ids if ids is None else ids, "seed": seed}


def read_recipe(benchmark_dir: str | Path) -> dict[str, Any] | None:
    """The recipe stored in a generated benchmark folder; None for real data (or a copy that predates it)."""
    path = Path(benchmark_dir) / RECIPE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def generate(like: str, out: str | Path, ids: int | None = None, seed: int = 0, preset: str = "tiny") -> Path:
    """Write a synthetic copy of benchmark ``like`` into ``out`` and return ``out`` (the data root).

    ``ids`` overrides the preset's identity count. Raises MDReIDError for an unknown ``like``/``preset``, bad
    ``ids``/``seed``, or when the benchmark folder already exists under ``out`` (the caller decides).
    """
    like = check_choice("like", str(like).lower(), DATASETS)
    check_choice("preset", preset, tuple(PRESETS))
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise MDReIDError(f"invalid seed={seed!r}: use a non-negative integer")
    n_train, n_test = _split(like, PRESETS[preset].ids if ids is None else ids)
    out = Path(out)
    target = out / benchmark_folder(like)
    if target.exists():
        raise MDReIDError(f"{target} already exists: delete it or choose another output folder")
    plan = _PLANNERS[like](seed, n_train, n_test, PRESETS[preset].per_id)
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=out))
    try:
        _write(plan, like, seed, scratch)
        (scratch / RECIPE_FILE).write_text(json.dumps(recipe(like, ids, seed, preset)) + "\n")
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
