"""Per-benchmark layouts of the synthetic copies: which triplets exist, under which file names, seen by which
camera or scene. A plan only names things; :mod:`mdreid.data.synthetic.generate` renders it.

- RGBNT201 (persons): ``RGBNT201/{train_171,test}/{RGB,NI,TI}/PPPPPP_camC_S_FF.jpg``. Train pids 1..n_train,
  cameras 1-4, ``S`` fixed per id and 1 for every id seen by cameras 3/4; test pids follow, each in both
  cam1 and cam2 with ``S=0``; ``FF`` runs from 00 in each (pid, cam, S) group.
- RGBNT100 (vehicles): ``RGBNT100/rgbir/{bounding_box_train,query,bounding_box_test}/PPPP_cCCCC_III.jpg``,
  each file a strip of the three panels. Train pids odd, test pids even (501.. while they fit under 600),
  5 images per (pid, camera), every test id in >= 2 cameras; ``query/`` holds copies of the ``III=000``
  image of every test (pid, camera) group (1 of every 5).
- MSVR310 (vehicles): ``MSVR310/{bounding_box_train,query3,bounding_box_test}/VVVV/{vis,ni,th}/VVVV_sSSS_vC_III.jpg``.
  Each id appears in 1-3 scenes and 1-3 views per scene; ``III`` runs per vehicle across scenes. Half the
  test ids are multi-scene (``query3/`` copies all their gallery images), the rest are single-scene
  gallery distractors.
- WMVEID863 (vehicles): ``MSVWild863/{train,query,test}/{vis,ni,th}/PPPP_camC_III.jpg``. Each id is seen by
  2-3 of 8 cameras (test ids by cameras train has seen); ``query/`` holds copies of the ``III=000`` triplet
  of every test (pid, camera) group, so each query's true matches are the id's other cameras.

The grammars are the real ones (docs/datasets.md), so the real readers load a copy unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from mdreid.data.readers import msvr310 as msvr310_reader
from mdreid.data.readers import rgbnt201 as rgbnt201_reader
from mdreid.data.readers import split_folders
from mdreid.data.readers import wmveid863 as wmveid863_reader
from mdreid.data.readers.rgbnt100 import SPLIT_PARENT
from mdreid.data.synthetic.streams import PLAN, SOURCES, keyed_rng

RGBNT100_GROUP = 5  # images per (pid, camera); the query keeps 1 of them
KINDS = {"rgbnt201": "person", "rgbnt100": "vehicle", "msvr310": "vehicle", "wmveid863": "vehicle"}
MAX_IDS = {"rgbnt201": 999_999, "rgbnt100": 450, "msvr310": 9_999, "wmveid863": 9_999}
WMVEID863_CAMERAS = 8  # what the filename grammars allow


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
        rng = keyed_rng(seed, SOURCES["rgbnt201"], PLAN, pid)
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
    folders = {role: f"{SPLIT_PARENT}/{f}" for role, f in split_folders("rgbnt100").items()}
    base = min(250, 300 - max(n_train, n_test))  # 501, 502, ... while the ids fit, lower otherwise
    plan = Plan()
    train_cams: set[int] = set()
    for i in range(n_train + n_test):
        test = i >= n_train
        pid = 2 * (base + i - n_train) + 2 if test else 2 * (base + i) + 1
        rng = keyed_rng(seed, SOURCES["rgbnt100"], PLAN, pid)
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
        rng = keyed_rng(seed, SOURCES["msvr310"], PLAN, pid)
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


def _plan_wmveid863(seed: int, n_train: int, n_test: int, per_id: int) -> Plan:
    """Ids in 2-3 cameras; a test id's first image per camera is also a query."""
    folders = split_folders("wmveid863")
    plan = Plan()
    train_cams: set[int] = set()
    for i in range(n_train + n_test):
        pid, test = i + 1, i >= n_train
        rng = keyed_rng(seed, SOURCES["wmveid863"], PLAN, pid)
        pool = sorted(train_cams) if test else list(range(1, WMVEID863_CAMERAS + 1))
        cams = sorted(rng.choice(pool, min(int(rng.integers(2, 4)), len(pool)), replace=False).tolist())
        train_cams.update(cams)
        folder = folders["gallery" if test else "train"]
        index = 0
        for cam, n in zip(cams, _spread(rng, _count(rng, per_id), len(cams), 2), strict=True):
            for k in range(n):
                name = f"{pid:04d}_cam{cam}_{index:03d}.jpg"
                files = tuple(f"{folder}/{m}/{name}" for m in wmveid863_reader.MODALITY_DIRS)
                plan.shots.append(Shot(files, pid, cam, (int(test), pid, cam, index)))
                if test and k == 0:
                    plan.copies += [(f, folders["query"] + f[len(folder) :]) for f in files]
                index += 1
    return plan


PLANNERS: dict[str, Callable[[int, int, int, int], Plan]] = {
    "rgbnt201": _plan_rgbnt201,
    "rgbnt100": _plan_rgbnt100,
    "msvr310": _plan_msvr310,
    "wmveid863": _plan_wmveid863,
}
