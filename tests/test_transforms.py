"""Triplet transforms (official train/test pipelines, sync option) and reading stitched RGBNT100 strips."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mdreid.data.records import Record
from mdreid.data.transforms import TripletTransform
from mdreid.data.triplet_dataset import read_modalities
from mdreid.process.errors import MDReIDError

SIZE = (32, 16)


def gradient_image(width: int = 20, height: int = 44) -> Image.Image:
    """Left-right and top-bottom asymmetric, so flips and crop offsets change the pixels."""
    x = np.linspace(0, 255, width)[None, :, None]
    y = np.linspace(0, 255, height)[:, None, None]
    pixels = np.concatenate(
        [
            np.broadcast_to(x, (height, width, 1)),
            np.broadcast_to(y, (height, width, 1)),
            np.full((height, width, 1), 60.0),
        ],
        axis=2,
    )
    return Image.fromarray(pixels.astype(np.uint8))


def test_test_transform_resizes_and_normalises_to_minus_one_one() -> None:
    transform = TripletTransform(SIZE, train=False)
    white, black = Image.new("RGB", (20, 40), "white"), Image.new("RGB", (50, 90), "black")
    out = transform([white, black, gradient_image()])
    assert [tuple(t.shape) for t in out] == [(3, *SIZE)] * 3
    assert torch.all(out[0] == 1.0) and torch.all(out[1] == -1.0)
    assert out[2].min() >= -1.0 and out[2].max() <= 1.0


def test_train_transform_shapes_padding_and_seeded_determinism() -> None:
    transform = TripletTransform(SIZE, train=True, random_erasing=0.0)
    white = Image.new("RGB", (20, 40), "white")
    outs = [transform([white] * 3, seed=s) for s in range(20)]
    assert all(tuple(t.shape) == (3, *SIZE) for o in outs for t in o)
    # the 10-pixel zero padding shows up as -1 borders whenever the crop is off-centre
    assert any((t == -1.0).any() for o in outs for t in o)
    assert all(torch.equal(a, b) for a, b in zip(transform([white] * 3, seed=7), outs[7], strict=True))


def test_seeded_call_leaves_the_callers_random_streams_alone() -> None:
    transform = TripletTransform(SIZE, train=True, random_erasing=1.0)
    torch.manual_seed(0)
    random.seed(0)
    expected = (torch.rand(3), random.random())
    torch.manual_seed(0)
    random.seed(0)
    transform([gradient_image()] * 3, seed=123)
    assert torch.equal(torch.rand(3), expected[0]) and random.random() == expected[1]


def test_sync_augment_keeps_identical_modalities_identical() -> None:
    picture = gradient_image()
    synced = TripletTransform(SIZE, train=True, random_erasing=0.0, sync=True)
    independent = TripletTransform(SIZE, train=True, random_erasing=0.0, sync=False)
    for seed in range(10):
        r, n, t = synced([picture] * 3, seed=seed)
        assert torch.equal(r, n) and torch.equal(r, t)
    differ = 0
    for seed in range(10):
        r, n, t = independent([picture] * 3, seed=seed)
        differ += not (torch.equal(r, n) and torch.equal(r, t))
    assert differ >= 7  # 1 - P(same flip and crop for all three) is about 0.99 per triplet


def test_sync_augment_erases_the_same_box_in_every_modality() -> None:
    grey = Image.new("RGB", (16, 32), (128, 128, 128))  # normalises to 1/255: anything else is erasing noise
    synced = TripletTransform(SIZE, train=True, random_erasing=1.0, sync=True)
    independent = TripletTransform(SIZE, train=True, random_erasing=1.0, sync=False)
    base = TripletTransform(SIZE, train=False)([grey])[0][0, 0, 0]
    same_boxes = 0
    for seed in range(8):
        boxes = [(t != base) & (t != -1.0) for t in synced([grey] * 3, seed=seed)]  # -1 = padding
        assert boxes[0].any()
        assert torch.equal(boxes[0], boxes[1]) and torch.equal(boxes[0], boxes[2])
        boxes = [(t != base) & (t != -1.0) for t in independent([grey] * 3, seed=seed)]
        same_boxes += torch.equal(boxes[0], boxes[1]) and torch.equal(boxes[0], boxes[2])
    assert same_boxes == 0


def test_bad_transform_settings_are_user_errors() -> None:
    with pytest.raises(MDReIDError, match="data.image_size"):
        TripletTransform([256], train=True)
    with pytest.raises(MDReIDError, match="data.random_erasing"):
        TripletTransform(SIZE, train=True, random_erasing=1.5)


def stitched_strip(path: Path, size: tuple[int, int] = (768, 128)) -> Record:
    strip = Image.new("RGB", size)
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        strip.paste(colour, (256 * i, 0, 256 * (i + 1), 128))
    strip.save(path, quality=95)
    return Record(paths=(str(path),) * 3, pid=501, camid=0, stitched=True)


def test_stitched_strip_is_cut_into_rgb_nir_tir_panels(tmp_path: Path) -> None:
    record = stitched_strip(tmp_path / "0501_c0001_000.jpg")
    panels = read_modalities(record)
    assert [p.size for p in panels] == [(256, 128)] * 3
    means = [np.asarray(p, dtype=float).reshape(-1, 3).mean(axis=0) for p in panels]
    assert [int(np.argmax(m)) for m in means] == [0, 1, 2]  # red | green | blue panels in order
    assert all(m.max() > 240 for m in means)
    partial = read_modalities(record, present=(False, True, True))
    assert [int(np.argmax(np.asarray(p, dtype=float).reshape(-1, 3).mean(axis=0))) for p in partial] == [1, 2]


def test_wrongly_sized_strip_and_unreadable_file_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(MDReIDError, match="expected 768x128"):
        read_modalities(stitched_strip(tmp_path / "0501_c0001_001.jpg", size=(512, 128)))
    broken = tmp_path / "000001_cam1_0_00.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(MDReIDError, match="cannot read"):
        read_modalities(Record(paths=(str(broken),) * 3, pid=1, camid=0))
