"""Synthetic benchmarks: the real layouts load through the real readers, generation is deterministic and
atomic, bad input fails in one line, and the renderer keeps the shape shared and the appearance specific."""

from __future__ import annotations

import hashlib
import os
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mdreid.data.readers import DATASETS, load_benchmark
from mdreid.data.records import Record
from mdreid.data.synthetic import generate as generate_module
from mdreid.data.synthetic.appearance import make_identity
from mdreid.data.synthetic.cameras import make_setting
from mdreid.data.synthetic.generate import PRESETS, generate
from mdreid.data.synthetic.layouts import RGBNT100_GROUP
from mdreid.data.synthetic.rendering import render_triplet
from mdreid.data.synthetic.shapes import KINDS
from mdreid.process.errors import MDReIDError

TINY = PRESETS["tiny"]
N_TEST = round(TINY.ids / 3)
N_TRAIN = TINY.ids - N_TEST


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All three benchmarks of the tiny preset, written into one data root."""
    root = tmp_path_factory.mktemp("synth")
    for like in DATASETS:
        assert generate(like, root) == root
    return root


def pids(records: list[Record]) -> set[int]:
    return {r.pid for r in records}


def cams_by_pid(records: list[Record]) -> dict[int, set[int]]:
    out: dict[int, set[int]] = defaultdict(set)
    for r in records:
        out[r.pid].add(r.camid)
    return out


def image_size(path: str) -> tuple[int, int]:
    with Image.open(path) as img:
        return img.size


def check_common(bench, n_train: int = N_TRAIN, n_test: int = N_TEST) -> None:
    """Disjoint id splits of the expected sizes, and no test camera beyond the train camera table (SIE)."""
    assert len(pids(bench.train)) == n_train
    assert len(pids(bench.gallery)) == n_test
    assert not pids(bench.train) & pids(bench.gallery)
    assert pids(bench.query) <= pids(bench.gallery)
    assert max(r.camid for r in bench.gallery) < bench.num_cameras


def test_root_holds_only_the_benchmark_folders(tiny: Path) -> None:
    assert sorted(os.listdir(tiny)) == [
        "MSVR310",
        "MSVWild863",
        "RGBNT100",
        "RGBNT201",
    ]  # no leftover scratch folders


def test_rgbnt201_layout(tiny: Path) -> None:
    bench = load_benchmark("rgbnt201", tiny)
    check_common(bench)
    assert bench.query is bench.gallery
    assert all(c == {0, 1} for c in cams_by_pid(bench.gallery).values())  # every test id in cam1 and cam2
    assert {r.camid for r in bench.train} <= {0, 1, 2, 3} and bench.num_cameras >= 3
    groups: dict[tuple[int, int, str], list[int]] = defaultdict(list)
    flags: dict[int, set[str]] = defaultdict(set)
    for r in bench.train + bench.gallery:
        pid, cam, flag, ff = re.fullmatch(r"(\d{6})_cam(\d)_(\d)_(\d{2})\.jpg", r.name).groups()  # type: ignore[union-attr]
        groups[(int(pid), int(cam), flag)].append(int(ff))
        flags[int(pid)].add(flag)
        assert flag == "1" or cam in "12"  # cameras 3 and 4 only with S=1
        assert r.split == "train" or flag == "0"  # the test split has S=0 only
    assert all(len(f) == 1 for f in flags.values())  # S is constant per identity
    assert all(sorted(ff) == list(range(len(ff))) for ff in groups.values())  # FF contiguous from 00
    for r in bench.train[::40]:
        w, h = image_size(r.paths[0])
        assert 96 <= h <= 160 and w < h and all(image_size(p) == (w, h) for p in r.paths)


def test_rgbnt100_layout(tiny: Path) -> None:
    bench = load_benchmark("rgbnt100", tiny)
    check_common(bench)
    assert all(r.stitched for r in bench.train + bench.gallery)
    assert all(r.pid % 2 == 1 for r in bench.train) and all(r.pid % 2 == 0 for r in bench.gallery)
    assert all(1 <= r.pid <= 600 for r in bench.train + bench.gallery)
    assert all(len(c) >= 2 for c in cams_by_pid(bench.gallery).values())
    files = {p for r in bench.train + bench.query + bench.gallery for p in r.paths}
    assert {image_size(p) for p in files} == {(768, 128)}
    group_sizes: dict[tuple[int, int], int] = defaultdict(int)
    for r in bench.train + bench.gallery:
        group_sizes[(r.pid, r.camid)] += 1
    assert set(group_sizes.values()) == {RGBNT100_GROUP}
    # query = the first image of every test (pid, camera) group, as byte-identical copies of the gallery file
    gallery = {r.name: r.paths[0] for r in bench.gallery}
    expected = sorted(n for n in gallery if n.endswith("_000.jpg"))
    assert sorted(r.name for r in bench.query) == expected
    for r in bench.query:
        assert Path(r.paths[0]).read_bytes() == Path(gallery[r.name]).read_bytes()


def test_msvr310_layout(tiny: Path) -> None:
    bench = load_benchmark("msvr310", tiny)
    check_common(bench)
    assert bench.junk_rule == "scene"
    scenes: dict[int, set[int]] = defaultdict(set)
    for r in bench.gallery:
        scenes[r.pid].add(r.sceneid)
    multi = {pid for pid, s in scenes.items() if len(s) >= 2}
    assert multi and multi != set(scenes)  # queried ids and single-scene distractors both exist
    assert pids(bench.query) == multi
    assert sorted(r.name for r in bench.query) == sorted(r.name for r in bench.gallery if r.pid in multi)
    for split in (bench.train, bench.gallery):
        index: dict[int, list[int]] = defaultdict(list)
        for r in split:
            index[r.pid].append(int(r.name[13:16]))
        assert all(sorted(i) == list(range(len(i))) for i in index.values())  # running index per vehicle
    for r in bench.train[::40]:
        w, h = image_size(r.paths[0])
        assert w > h and all(image_size(p) == (w, h) for p in r.paths)


def all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.jpg"))}


def test_same_seed_same_bytes_other_seed_other_images(tmp_path: Path) -> None:
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        generate("msvr310", tmp_path / name, ids=6, seed=seed)
    a, b, c = (all_files(tmp_path / n) for n in "abc")
    assert a == b
    assert sum(a[f] == c.get(f) for f in a) < 0.05 * len(a)  # another seed draws other images
    check_common(load_benchmark("msvr310", tmp_path / "a"), n_train=4, n_test=2)  # ids overrides the preset


def test_bad_arguments_fail_in_one_line(tmp_path: Path) -> None:
    cases = {
        ("market1501", "tiny", None, 0): "rgbnt201, rgbnt100, msvr310",
        ("rgbnt201", "huge", None, 0): "tiny, bench",
        ("rgbnt201", "tiny", 2, 0): "ids",
        ("rgbnt100", "tiny", 1000, 0): "ids",
        ("rgbnt201", "tiny", None, -1): "seed",
    }
    for (like, preset, ids, seed), fragment in cases.items():
        with pytest.raises(MDReIDError, match=re.escape(fragment)) as err:
            generate(like, tmp_path, ids=ids, seed=seed, preset=preset)
        assert "\n" not in str(err.value)
    assert os.listdir(tmp_path) == []


def test_existing_target_is_refused_and_left_alone(tmp_path: Path) -> None:
    (tmp_path / "RGBNT100").mkdir()
    (tmp_path / "RGBNT100" / "mine.txt").write_text("keep")
    with pytest.raises(MDReIDError, match="already exists"):
        generate("rgbnt100", tmp_path)
    assert os.listdir(tmp_path / "RGBNT100") == ["mine.txt"]


def test_interrupted_run_leaves_no_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) > 5:
            raise KeyboardInterrupt
        return render_triplet(*args, **kwargs)

    monkeypatch.setattr(generate_module, "render_triplet", failing)
    with pytest.raises(KeyboardInterrupt):
        generate("rgbnt201", tmp_path)
    assert os.listdir(tmp_path) == []  # neither RGBNT201/ nor a hidden partial folder


# ------------------------------------------------------------------------------- the cue design


def luminance(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def interior(mask: np.ndarray) -> np.ndarray:
    """Pixels whose 4 neighbours share the mask, so blur at part borders does not mix parts."""
    core = mask.copy()
    core[1:] &= mask[:-1]
    core[:-1] &= mask[1:]
    core[:, 1:] &= mask[:, :-1]
    core[:, :-1] &= mask[:, 1:]
    return core


@pytest.mark.parametrize("kind", KINDS)
def test_appearance_is_specific_to_each_modality(kind: str) -> None:
    """Per identity and part, the mean brightness of each modality is a stable identity cue (it agrees
    between disjoint images) but says nothing about the other modalities (it would if NIR were grey RGB)."""
    n_ids, n_images, n_parts = 24, 6, 7
    means = np.full((2, 3, n_ids, n_parts), np.nan)  # image half, modality, identity, part
    for pid in range(n_ids):
        identity = make_identity(kind, (11, pid))
        values: dict[tuple[int, int, int], list[float]] = defaultdict(list)
        for k in range(n_images):
            triplet = render_triplet(identity, make_setting(kind, (12, k % 3)), (13, pid, k))
            for part in range(n_parts):
                pixels = interior(triplet.parts == part + 1)
                if pixels.sum() >= 4:
                    for m in range(3):
                        values[(k % 2, m, part)].append(float(luminance(triplet.images[m])[pixels].mean()))
        for (half, m, part), v in values.items():
            means[half, m, pid, part] = np.mean(v)
    centred = means - np.nanmean(means, axis=2, keepdims=True)  # remove per-part class priors (hot skin...)
    ok = ~np.isnan(centred).any(axis=(0, 1))

    def corr(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.corrcoef(a[ok], b[ok])[0, 1])

    for m in range(3):
        assert corr(centred[0, m], centred[1, m]) > 0.6
    both = centred.mean(axis=0)  # NaN only where `ok` is False
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert abs(corr(both[a], both[b])) < 0.3


@pytest.mark.parametrize("kind", KINDS)
def test_geometry_is_shared_by_the_three_images(kind: str) -> None:
    """Edges line up across the modalities of one triplet, not across two triplets of the same size."""
    size = (128, 64) if kind == "person" else (64, 128)
    triplets = [
        render_triplet(make_identity(kind, (21, i)), make_setting(kind, (22, i)), (23, i), size=size)
        for i in range(6)
    ]

    def edges(image: np.ndarray) -> np.ndarray:
        gy, gx = np.gradient(luminance(image))
        return np.hypot(gx, gy).ravel()

    aligned, shuffled = [], []
    for i, t in enumerate(triplets):
        other = triplets[(i + 1) % len(triplets)]
        for a, b in ((0, 1), (0, 2), (1, 2)):
            aligned.append(np.corrcoef(edges(t.images[a]), edges(t.images[b]))[0, 1])
            shuffled.append(np.corrcoef(edges(t.images[a]), edges(other.images[b]))[0, 1])
    assert np.mean(aligned) > np.mean(shuffled) + 0.25


@pytest.mark.parametrize("kind", KINDS)
def test_shape_identifies_across_images(kind: str) -> None:
    """The shared cue carries identity: part maps of one identity in other images, under other poses and
    viewpoints, are nearer than those of other identities (so cross-modal matching has something to use)."""
    n_ids, n_images = 12, 4
    descriptors, labels = [], []
    for pid in range(n_ids):
        identity = make_identity(kind, (31, pid))
        for k in range(n_images):
            parts = render_triplet(identity, make_setting(kind, (32, k)), (33, pid, k)).parts
            ys, xs = np.nonzero(parts)
            crop = parts[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
            planes = [
                Image.fromarray((crop == p).astype(np.uint8) * 255).resize((16, 16)) for p in range(1, 8)
            ]
            d = np.concatenate([np.asarray(p, np.float32).ravel() for p in planes])
            descriptors.append((d - d.mean()) / np.linalg.norm(d - d.mean()))
            labels.append(pid)
    x, y = np.stack(descriptors), np.array(labels)
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    assert (y[sim.argmax(1)] == y).mean() > 0.5  # chance is 1/12


# ------------------------------------------------------------------------------- cross-modal coupling

# sha256 of six triplets rendered by the generator before the coupling knob existed (coupling 0 keeps them)
INDEPENDENT_BYTES = "7989a52d5eedb42e2182f19f094ea0913449bec67cc8d629d08e63f26ea08f1d"


def test_coupling_zero_renders_the_independent_generator_byte_for_byte() -> None:
    digest = hashlib.sha256()
    for kind in KINDS:
        for i in range(3):
            identity = make_identity(kind, (5, 201, 0, i), coupling=0.0)
            triplet = render_triplet(identity, make_setting(kind, (5, 201, 1, i)), (5, 201, 3, i))
            for image in triplet.images:
                digest.update(image.tobytes())
    assert digest.hexdigest() == INDEPENDENT_BYTES


GEOMETRY = ("texture", "freq", "angle", "phase")


@pytest.mark.parametrize("kind", KINDS)
def test_coupling_is_the_share_of_materials_that_follow_rgb(kind: str) -> None:
    """A following material keeps RGB's texture geometry in NIR and TIR; the share of them is ``coupling``."""
    for coupling, lo, hi in ((0.0, 0.0, 0.02), (0.5, 0.42, 0.58), (1.0, 1.0, 1.0)):
        follows = []
        for pid in range(120):
            rgb, nir, tir = make_identity(kind, (41, pid), coupling).looks
            same = np.all([getattr(rgb, f) == getattr(nir, f) for f in GEOMETRY], axis=0)
            assert np.array_equal(
                same, np.all([getattr(rgb, f) == getattr(tir, f) for f in GEOMETRY], axis=0)
            )
            follows.append(same)
        assert lo <= np.mean(follows) <= hi, coupling


@pytest.mark.parametrize("kind", KINDS)
def test_coupled_nir_levels_track_rgb_only_partly(kind: str) -> None:
    """Across identities, a part's NIR level correlates with its RGB luminance when coupled, not when
    independent; it never equals it (IR-transparent dyes are bright in NIR whatever their colour)."""

    def corr(coupling: float) -> float:
        rgb_l, nir_l = [], []
        for pid in range(200):
            rgb, nir, _ = make_identity(kind, (43, pid), coupling).looks
            rgb_l.append(rgb.base @ np.array([0.299, 0.587, 0.114]))
            nir_l.append(nir.base[:, 0])
        a, b = np.array(rgb_l), np.array(nir_l)
        a, b = a - a.mean(0), b - b.mean(0)  # centred per part: class priors (bright skin...) removed
        return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])

    independent, coupled = corr(0.0), corr(1.0)
    assert abs(independent) < 0.15
    assert 0.3 < coupled < 0.95


def test_bad_coupling_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(MDReIDError, match="data.synth.coupling"):
        generate("rgbnt201", tmp_path, coupling=1.5)
