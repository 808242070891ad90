"""16-bit and float images (thermal cameras) map to the model's input by the documented rule, exactly, in the
datasets training and evaluation read; 8-bit files are read byte for byte as before; nothing is clipped."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY_OVERRIDES, compose_cfg
from mdreid.data.bit_depth import BitDepthRule, open_rgb
from mdreid.data.readers import load_benchmark
from mdreid.data.readers.manifest import load_manifest, write_manifest
from mdreid.data.records import Benchmark, Record
from mdreid.data.synthetic.generate import generate
from mdreid.data.synthetic.high_bit_copy import high_bit_copy
from mdreid.data.transforms import TripletTransform
from mdreid.data.triplet_dataset import EvalTripletDataset, read_modalities
from mdreid.process.errors import MDReIDError
from mdreid.train import train

SIZE = (24, 16)  # height, width of the test images


def expected_8bit(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The documented formula, written out independently of the implementation."""
    out = np.zeros(values.shape, dtype=np.uint8)
    for index, v in np.ndenumerate(values.astype(np.float64)):
        out[index] = int(np.floor((v - lo) * 255.0 / (hi - lo) + 0.5))
    return out


def save(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


@pytest.fixture
def samples() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20)
    return {
        "uint16": rng.integers(1000, 60000, SIZE, dtype=np.uint16),
        "float32": rng.uniform(-12.5, 48.0, SIZE).astype(np.float32),  # degrees Celsius
    }


@pytest.mark.parametrize(
    ("name", "kind", "mode"),
    [
        ("t.png", "uint16", "I;16"),  # 16-bit PNG
        ("t.tif", "uint16", "I;16"),  # 16-bit TIFF, little endian
        ("t.tif", "uint16be", "I;16B"),  # 16-bit TIFF, big endian
        ("t.tif", "float32", "F"),  # float TIFF
    ],
)
def test_stretch_maps_min_to_0_and_max_to_255_exactly(
    tmp_path: Path, samples: dict[str, np.ndarray], name: str, kind: str, mode: str
) -> None:
    values = samples["float32" if kind == "float32" else "uint16"]
    stored = values.astype(">u2") if kind == "uint16be" else values
    path = save(tmp_path / name, stored)
    assert Image.open(path).mode == mode
    grey = expected_8bit(values, float(values.min()), float(values.max()))
    assert grey.min() == 0 and grey.max() == 255
    image = np.asarray(open_rgb(str(path)))
    assert image.dtype == np.uint8 and image.shape == (*SIZE, 3)
    for channel in range(3):
        np.testing.assert_array_equal(image[..., channel], grey)


@pytest.mark.parametrize("kind", ["uint16", "float32"])
def test_fixed_range_maps_lo_hi_to_0_255_and_refuses_values_outside(
    tmp_path: Path, samples: dict[str, np.ndarray], kind: str
) -> None:
    values = samples[kind]
    path = save(tmp_path / "t.tif", values)
    lo, hi = (0.0, 65535.0) if kind == "uint16" else (-20.0, 60.0)
    image = np.asarray(open_rgb(str(path), BitDepthRule("range", (lo, hi))))
    np.testing.assert_array_equal(image[..., 1], expected_8bit(values, lo, hi))
    assert image.max() < 255  # the range is wider than the samples: no stretch
    narrow = (float(values.min()) + 1, hi)
    with pytest.raises(MDReIDError) as info:
        open_rgb(str(path), BitDepthRule("range", narrow))
    message = str(info.value)
    assert message.startswith(f"{path}: samples span {float(values.min()):g}..{float(values.max()):g}")
    assert f"outside data.high_bit_depth.range=[{narrow[0]:g}, {hi:g}]" in message


def test_a_16bit_copy_of_a_full_range_8bit_image_reads_back_exactly(tmp_path: Path) -> None:
    """v * 257 maps 0..255 onto 0..65535: the stretch of an image spanning 0..255 and the range [0, 65535]
    both give the 8-bit values back; a narrower image is stretched by the one rule, identical under range."""
    rng = np.random.default_rng(7)
    full = rng.integers(0, 256, SIZE, dtype=np.uint8)
    full[0, 0], full[0, 1] = 0, 255
    narrow = rng.integers(40, 200, SIZE, dtype=np.uint8)
    for name, grey in (("full", full), ("narrow", narrow)):
        eight = str(save(tmp_path / f"{name}8.png", grey))
        sixteen = str(save(tmp_path / f"{name}16.png", grey.astype(np.uint16) * 257))
        reference = np.asarray(open_rgb(eight))
        assert (
            np.asarray(open_rgb(sixteen, BitDepthRule("range", (0, 65535)))).tobytes() == reference.tobytes()
        )
        stretched = np.asarray(open_rgb(sixteen))
        if name == "full":
            assert stretched.tobytes() == reference.tobytes()
        else:
            wide = grey.astype(np.uint16) * 257
            stretch = expected_8bit(wide, float(wide.min()), float(wide.max()))
            np.testing.assert_array_equal(stretched[..., 0], stretch)
            assert stretch.min() == 0 and stretch.max() == 255 and not np.array_equal(stretch, grey)


def test_constant_nan_and_infinite_images(tmp_path: Path) -> None:
    constant = save(tmp_path / "c.png", np.full(SIZE, 31000, dtype=np.uint16))
    assert np.asarray(open_rgb(str(constant))).max() == 0  # no span to divide by: every sample is the minimum
    assert np.asarray(open_rgb(str(constant), BitDepthRule("range", (0, 62000)))).max() == 128
    for bad, count in ((np.nan, "1 NaN and 0 infinite"), (np.inf, "0 NaN and 1 infinite")):
        values = np.zeros(SIZE, dtype=np.float32)
        values[3, 4] = bad
        path = save(tmp_path / "bad.tif", values)
        with pytest.raises(
            MDReIDError, match=rf"^{path}: {count} sample\(s\); a float image must hold finite"
        ):
            open_rgb(str(path))


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "RGBA"])
def test_8bit_files_read_byte_for_byte_as_before(tmp_path: Path, mode: str) -> None:
    rng = np.random.default_rng(3)
    image = Image.fromarray(rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8)).convert(mode)
    for suffix in (".png", ".jpg") if mode in ("RGB", "L") else (".png",):
        path = tmp_path / f"x{suffix}"
        image.save(path)
        before = Image.open(path).convert("RGB")  # what the readers did for every file
        for rule in (BitDepthRule(), BitDepthRule("range", (0, 1))):
            assert open_rgb(str(path), rule).tobytes() == before.tobytes()


def test_the_evaluation_dataset_feeds_the_rule_s_values_to_the_model(
    tmp_path: Path, samples: dict[str, np.ndarray]
) -> None:
    """The tensors of R (8-bit JPEG), N (16-bit PNG) and T (float TIFF) equal the test transform of the
    rule's 8-bit images; the pre-rule reading (PIL's clip) would have been a white N image."""
    rgb = save(tmp_path / "r.jpg", np.random.default_rng(1).integers(0, 256, (*SIZE, 3), dtype=np.uint8))
    nir = save(tmp_path / "n.png", samples["uint16"])
    tir = save(tmp_path / "t.tif", samples["float32"])
    record = Record(paths=(str(rgb), str(nir), str(tir)), pid=1, camid=0, split="test")
    bench = Benchmark("manifest", str(tmp_path), [], [record], [record])
    transform = TripletTransform(SIZE, train=False)
    for rule, (lo_n, hi_n), (lo_t, hi_t) in (
        (
            BitDepthRule(),
            (samples["uint16"].min(), samples["uint16"].max()),
            (samples["float32"].min(), samples["float32"].max()),
        ),
        (BitDepthRule("range", (-20.0, 65535.0)), (-20.0, 65535.0), (-20.0, 65535.0)),
    ):
        item = EvalTripletDataset(bench, transform, rule)[0]
        greys = (
            expected_8bit(samples["uint16"], float(lo_n), float(hi_n)),
            expected_8bit(samples["float32"], float(lo_t), float(hi_t)),
        )
        images = [Image.open(rgb).convert("RGB"), *(Image.fromarray(g).convert("RGB") for g in greys)]
        for key, want in zip(("RGB", "NI", "TI"), transform(images), strict=True):
            assert torch.equal(item[key], want), key
    clipped = np.asarray(Image.open(nir).convert("RGB"))
    assert clipped.min() == 255  # what convert("RGB") alone made of it: every sample clipped to white
    assert np.asarray(read_modalities(record)[1]).min() == 0


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"mode": "linear"}, "data.high_bit_depth.mode='linear': use one of stretch, range"),
        ({"mode": "range"}, "data.high_bit_depth.range=None: mode=range needs [lo, hi]"),
        ({"mode": "range", "range": [5, 5]}, "data.high_bit_depth.range=[5.0, 5.0]: lo must be below hi"),
        ({"mode": "range", "range": "0,1"}, "data.high_bit_depth.range='0,1': expected a list of 2 value(s)"),
        ({"mode": "range", "range": [0, "hot"]}, "data.high_bit_depth.range[1]='hot': expected a number"),
        ({"mode": 1}, "data.high_bit_depth.mode=1: expected a string"),
        ({"mode": "stretch", "range": [0, 1]}, "is only used with data.high_bit_depth.mode=range"),
        ({"mode": "stretch", "clip": True}, "data.high_bit_depth: unknown key(s) clip; allowed: mode, range"),
    ],
)
def test_config_errors_name_the_key(cfg: dict, message: str) -> None:
    with pytest.raises(MDReIDError, match=re.escape(message)):
        BitDepthRule.from_config(cfg)


def _thermal_manifest(folder: Path, samples: dict[str, np.ndarray]) -> Path:
    """Two 8-bit JPEGs, a 16-bit PNG, a float TIFF (degrees C), a constant 16-bit PNG and a float TIFF with a NaN."""
    rng = np.random.default_rng(5)
    for name in ("a.jpg", "b.jpg"):
        save(folder / name, rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8))
    save(folder / "n16.png", samples["uint16"])
    save(folder / "t.tif", samples["float32"])
    save(folder / "const.png", np.full(SIZE, 31000, dtype=np.uint16))
    nan = samples["float32"].copy()
    nan[0, 0] = np.nan
    save(folder / "nan.tif", nan)
    manifest = folder / "m.csv"
    manifest.write_text(
        "split,pid,camid,rgb,nir,tir\n"
        "train,1,0,a.jpg,n16.png,t.tif\n"
        "train,2,0,b.jpg,const.png,\n"
        "query,1,1,,,nan.tif\n"
        "gallery,1,0,a.jpg,,\n"
    )
    return manifest


def test_verify_and_stats_say_which_rule_maps_how_many_files(
    tmp_path: Path, samples: dict[str, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    from mdreid.data.cli import main

    manifest = str(_thermal_manifest(tmp_path, samples))
    assert main(["verify", "--dataset", "manifest", "--root", manifest]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["1 of 6 files are bad:", f"  {tmp_path / 'nan.tif'}: 1 NaN and 0 infinite sample(s)"]
    assert lines[-1] == (
        "2 8-bit files read as they are; 3 16-bit or float files mapped by min-max stretch per image to 0..255 "
        "(data.high_bit_depth.mode=stretch), 1 of them constant (mapped to 0); 1 16-bit or float files it "
        "cannot map (NaN, infinite or out of range): bad"
    )  # a manifest may hold PNG and TIFF files and 16-bit or float samples: nothing is flagged
    args = [
        "verify",
        "--dataset",
        "manifest",
        "--root",
        manifest,
        "--high-bit-depth",
        "range",
        "--range",
        "0",
        "65535",
    ]
    assert main(args) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "2 of 6 files are bad:"
    low, high = float(samples["float32"].min()), float(samples["float32"].max())
    assert (
        f"  {tmp_path / 't.tif'}: samples span {low:g}..{high:g}, outside data.high_bit_depth.range=[0, 65535]"
        in lines
    )
    assert lines[-1] == (  # the bad files are counted as bad, not as mapped
        "2 8-bit files read as they are; 2 16-bit or float files mapped by fixed range [0, 65535] to 0..255 "
        "(data.high_bit_depth.mode=range), 1 of them constant (mapped to 0); 2 16-bit or float files it cannot "
        "map (NaN, infinite or out of range): bad"
    )
    # stats decodes the 16-bit and float files too: the NaN file is bad there as well, and the exit code says so
    assert main(["stats", "--dataset", "manifest", "--root", manifest]) == 1
    assert capsys.readouterr().out.splitlines()[-2:] == [
        "2 8-bit files read as they are; 3 16-bit or float files mapped by min-max stretch per image to 0..255 "
        "(data.high_bit_depth.mode=stretch); 1 16-bit or float files it cannot map (NaN, infinite or out of "
        "range): bad",
        "1 of 6 files are bad: `verify` names them",
    ]
    assert main(["stats", "--dataset", "manifest", "--root", manifest, "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["files"] == {
        "8-bit": 2,
        "16-bit or float": 3,
        "unmappable": 1,
        "unreadable": 0,
        "high_bit_depth": "min-max stretch per image to 0..255",
    }
    save(tmp_path / "nan.tif", samples["float32"])  # the file re-exported without its NaN
    assert main(["stats", "--dataset", "manifest", "--root", manifest]) == 0
    assert (
        capsys.readouterr()
        .out.splitlines()[-1]
        .startswith("2 8-bit files read as they are; 4 16-bit or float files mapped by min-max stretch")
    )
    (tmp_path / "n16.png").rename(tmp_path / "n16.jpg")  # a renamed file is still flagged in a manifest
    Path(manifest).write_text(Path(manifest).read_text().replace("n16.png", "n16.jpg"))
    assert main(["verify", "--dataset", "manifest", "--root", manifest]) == 1
    assert "  n16.jpg: PNG file named .jpg" in capsys.readouterr().out.splitlines()


@pytest.fixture(scope="module")
def grey_copies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny synthetic RGBNT201 manifest and its grey 8-bit and 16-bit (v * 257) NIR/TIR copies."""
    root = tmp_path_factory.mktemp("grey")
    generate("rgbnt201", root, ids=8, seed=0, preset="tiny")
    original = write_manifest(load_benchmark("rgbnt201", root), root / "m.csv")
    return {kind: high_bit_copy(original, root / kind / "m.csv", kind) for kind in ("grey8", "grey16")}


def test_a_16bit_copy_of_a_dataset_loads_the_8bit_tensors(grey_copies: dict[str, Path]) -> None:
    """Under range [0, 65535] every tensor equals the 8-bit copy's; under the default stretch exactly those
    whose grey image spans 0..255 do (the others gain contrast: min -> 0, max -> 255)."""
    eight, sixteen = (load_manifest(grey_copies[k]) for k in ("grey8", "grey16"))
    transform = TripletTransform(SIZE, train=False)
    reference = EvalTripletDataset(eight, transform)
    same_range = EvalTripletDataset(sixteen, transform, BitDepthRule("range", (0, 65535)))
    stretched = EvalTripletDataset(sixteen, transform)
    spans, equal = 0, 0
    for i in range(len(reference)):
        want = reference[i]
        assert all(torch.equal(want[k], same_range[i][k]) for k in ("RGB", "NI", "TI")), i
        assert torch.equal(want["RGB"], stretched[i]["RGB"])
        for key, path in (("NI", reference.records[i].paths[1]), ("TI", reference.records[i].paths[2])):
            grey = np.asarray(Image.open(path))
            full = grey.min() == 0 and grey.max() == 255
            spans += full
            equal += torch.equal(want[key], stretched[i][key])
            if full:
                assert torch.equal(want[key], stretched[i][key])
    assert equal == spans < 2 * len(reference)  # the synthetic images rarely span 0..255


@pytest.mark.slow
def test_training_on_the_16bit_copy_scores_as_on_the_8bit_one(
    grey_copies: dict[str, Path], tmp_path: Path
) -> None:
    """One short train + test per copy: identical metrics under range [0, 65535], since the model sees the same
    tensors; the stretch's numbers are compared over seeds in docs/results.md."""
    metrics = {}
    for kind, extra in (
        ("grey8", []),
        ("grey16", ["data.high_bit_depth.mode=range", "data.high_bit_depth.range=[0,65535]"]),
    ):
        data = [
            "data.dataset=manifest",
            f"data.manifest={grey_copies[kind]}",
            "data.synth=null",
            "eval.plots=false",
            "data.val=none",  # 5 training identities: too few to hold some out
        ]
        overrides = [*TINY_OVERRIDES, f"paths.data_dir={tmp_path}", *data, "trainer.max_epochs=1", *extra]
        metrics[kind] = train(compose_cfg("train.yaml", overrides, tmp_path / kind))
    assert metrics["grey8"] == metrics["grey16"] and metrics["grey8"]["test/score"] > 0
