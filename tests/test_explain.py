"""Why a match was made: drop-one shares against hand-computed numbers, Grad-CAM maps against a by-hand
Grad-CAM on the patch grid (prefix tokens dropped, non-square grids), targets equal to the search's scores,
and ``python -m mdreid.explain`` on an mdreid checkpoint and an official-layout file."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import save_weights_checkpoint
from mdreid.explain.cam import cam_layer, grad_cam, identity_target, similarity_target
from mdreid.explain.cli import main
from mdreid.explain.shares import Side, drop_one_shares, pair_scores
from mdreid.index.pair_vectors import pair_vectors
from mdreid.modalities import all_pairs
from mdreid.module import ReIDModule
from test_official import official_state

TOWER = {
    "name": "ViT-B-16",
    "weights": None,
    "vision": {"width": 32, "layers": 2, "heads": 2, "patch_size": 8},
}
ALL = torch.ones(1, 3, dtype=torch.bool)


def tiny_module(size=(32, 16), seed: int = 0, **model) -> ReIDModule:
    torch.manual_seed(seed)
    return ReIDModule(
        backbone={**TOWER, "embed_dim": 16}, num_classes=5, num_cameras=3, image_size=size, **model
    ).eval()


def side(sp: list, sh: list) -> Side:
    """One item from per-modality R, N, T rows of 2-d features."""
    return Side(torch.tensor([sp], dtype=torch.float32), torch.tensor([sh], dtype=torch.float32), ALL)


def test_drop_one_shares_by_hand() -> None:
    e1, e2 = [1.0, 0.0], [0.0, 1.0]
    q = side([e1, e1, e2], [e1, e1, e2])
    g = side([e1, e1, e2], [e2, e1, e2])
    # RT->RT (code): blocks sp_R, sp_T, sh_R, sh_T; dot 1 + 1 + 0 + 1 = 3 over norms 2 * 2: 0.75.
    # Without R (either side): sp_T, sh_T alone, cosine 1. Without T: sp_R, sh_R, dot 1 over 2: 0.5.
    (found,) = drop_one_shares(q, g, "RT", "RT", "code")
    assert found.score == pytest.approx(0.75)
    assert found.query == pytest.approx({"R": -0.25, "T": 0.25})
    assert found.gallery == pytest.approx({"R": -0.25, "T": 0.25})
    # R->NT (code): sh_R against sh_N and sh_T; q = [e1, e1], g = [e1, e2]: 1 / (sqrt2 sqrt2) = 0.5.
    # Without N: R->T, cos(e1, e2) = 0; without T: R->N, cos(e1, e1) = 1. The query's only R: no share.
    (found,) = drop_one_shares(q, g, "R", "NT", "code")
    assert found.score == pytest.approx(0.5)
    assert found.query == {"R": None}
    assert found.gallery == pytest.approx({"N": 0.5, "T": -0.5})
    # paper: (mean sp cosine + mean sh cosine) / 2 = (1 + (0 + 1) / 2) / 2 = 0.75 on RT->RT as well;
    # without T: (1 + 0) / 2 = 0.5, without R: (1 + 1) / 2 = 1
    (found,) = drop_one_shares(q, g, "RT", "RT", "paper")
    assert (found.score, found.query["T"], found.query["R"]) == pytest.approx((0.75, 0.25, -0.25))


@pytest.mark.parametrize("mode", ["code", "paper"])
def test_scores_are_the_search_scores(mode) -> None:
    gen = torch.Generator().manual_seed(0)
    q = Side(torch.randn(1, 3, 6, generator=gen), torch.randn(1, 3, 6, generator=gen), ALL)
    g = Side(torch.randn(4, 3, 6, generator=gen), torch.randn(4, 3, 6, generator=gen), ALL.expand(4, 3))
    for q_subset, g_subset in all_pairs():
        v_q, _ = pair_vectors(q.sp, q.sh, q.present, q_subset, g_subset, "query", mode)
        v_g, _ = pair_vectors(g.sp, g.sh, g.present, q_subset, g_subset, "gallery", mode)
        torch.testing.assert_close(pair_scores(q, g, q_subset, g_subset, mode), v_q @ v_g.T)


def by_hand(net, image: torch.Tensor, camid: int, target, grid: tuple[int, int]) -> np.ndarray:
    """Grad-CAM written out: last block's first-norm tokens, patches only, channel weights = mean gradient."""
    seen = {}
    handle = cam_layer(net.mdl.encoder).register_forward_hook(lambda m, i, o: seen.update(a=o))
    tokens = net.mdl(image[None], torch.tensor([camid]))
    handle.remove()
    acts = seen["a"][0, -grid[0] * grid[1] :]  # [P, W], row-major patches
    (grads,) = torch.autograd.grad(target(tokens[0]), seen["a"])
    weights = grads[0, -grid[0] * grid[1] :].mean(0)
    cam = torch.relu(acts @ weights).reshape(grid).detach().numpy()
    cam = (cam - cam.min()) / (cam.max() - cam.min() + 1e-7)
    cam = cv2.resize(cam, (image.shape[2], image.shape[1]))
    return (cam - cam.min()) / (cam.max() + 1e-7)


@pytest.mark.parametrize(("size", "grid"), [((32, 16), (4, 2)), ((16, 32), (2, 4))])
@pytest.mark.parametrize("feature", ["sp", "sh"])
def test_grad_cam_is_grad_cam_on_the_patch_grid(size, grid, feature) -> None:
    """Two prefix tokens dropped, a tall (persons) or wide (vehicles) grid in row-major order."""
    net = tiny_module(size).net
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, *size, generator=gen)
    with torch.no_grad():
        sp, sh = net.extract({"RGB": images[:1], "NI": images[:1], "TI": images[1:]}, ALL, torch.tensor([1]))
        sp2, sh2 = net.extract(
            {"RGB": images[1:], "NI": images[1:], "TI": images[:1]}, ALL, torch.tensor([0])
        )
    q, g = Side(sp, sh, ALL), Side(sp2, sh2, ALL)
    target = similarity_target(net, q, g, ("RNT", "RT"), "code", "query", 2, feature)
    with torch.no_grad():  # the target at the image's own tokens is the match's score
        score = target(net.mdl(images[1:], torch.tensor([1]))[0])
    assert float(score) == pytest.approx(float(pair_scores(q, g, "RNT", "RT", "code")), abs=1e-6)
    cam = grad_cam(net, images[1], 1, target)
    assert cam.shape == size and cam.max() == pytest.approx(1.0, abs=1e-5) and cam.std() > 0.05
    np.testing.assert_allclose(cam, by_hand(net, images[1], 1, target, grid), atol=1e-4)
    identity = identity_target(net, q, 0, feature, label=3)
    np.testing.assert_allclose(
        grad_cam(net, images[0], 1, identity), by_hand(net, images[0], 1, identity, grid), atol=1e-4
    )


def write_images(folder: Path, seed: int, size=(48, 24)) -> list[str]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in ("r", "n", "t"):
        path = folder / f"{name}.png"
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def explain(tmp_path: Path, ckpt: Path, out: str, *extra: str) -> dict:
    q, g = write_images(tmp_path / "q", 0), write_images(tmp_path / "g", 1)
    args = ["--ckpt", str(ckpt), "--out", str(tmp_path / out), "--device", "cpu"]
    args += ["--query-rgb", q[0], "--query-tir", q[2], "--query-camid", "1"]
    args += ["--gallery-rgb", g[0], "--gallery-nir", g[1], "--gallery-tir", g[2], "--gallery-camid", "0"]
    assert main([*args, *extra]) == 0
    return json.loads((tmp_path / out / "explanation.json").read_text())


def test_cli_on_an_mdreid_checkpoint(tmp_path: Path, capsys) -> None:
    ckpt = save_weights_checkpoint(tiny_module(), tmp_path / "m.ckpt")
    report = explain(tmp_path, ckpt, "why")
    assert report["pair"] == "RT->RNT" and set(report["shares"]["gallery"]) == {"R", "N", "T"}
    assert (
        report["shares"]["gallery"]["N"] == 0.0
    )  # code mode: with nothing unmatched on the query, N is unused
    written = sorted(p.name for p in (tmp_path / "why").iterdir())
    assert written == sorted(
        [*(f"gallery_{m}.png" for m in "RNT"), "explanation.json", "query_R.png", "query_T.png"]
    )
    assert Image.open(tmp_path / "why" / "query_T.png").size == (16, 32)  # the model's 32x16 view
    # the score is the search's: the explainer's features give the same inner product
    from mdreid.data.records import Record
    from mdreid.explain.explainer import Explainer

    ex = Explainer(tiny_module())
    q = ex.features([Record((str(tmp_path / "q/r.png"), "", str(tmp_path / "q/t.png")), -1, 1)])
    g = ex.features([Record(tuple(str(tmp_path / f"g/{m}.png") for m in "rnt"), -1, 0)])
    v_q, _ = pair_vectors(q.sp, q.sh, q.present, "RT", "RNT", "query")
    v_g, _ = pair_vectors(g.sp, g.sh, g.present, "RT", "RNT", "gallery")
    assert report["score"] == pytest.approx(float(v_q @ v_g.T), abs=1e-6)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:  # the same folder again: nothing is overwritten
        explain(tmp_path, ckpt, "why")
    assert exc.value.code == 2 and capsys.readouterr().err.startswith("error: --out")


def test_cli_on_an_official_file_every_modality_and_identity(tmp_path: Path) -> None:
    path = tmp_path / "MDReID_RGBNT201.pth"
    torch.save(official_state(num_classes=171, num_cameras=4, grid=128, seed=4), path)
    report = explain(tmp_path, path, "match", "--query-modalities", "RT", "--feature", "sp")
    assert report["pair"] == "RT->RNT" and report["feature"] == "sp"
    for name in ("query_R", "query_T", "gallery_R", "gallery_N", "gallery_T"):
        image = np.asarray(Image.open(tmp_path / "match" / f"{name}.png"))
        assert image.shape == (256, 128, 3)
    q = write_images(tmp_path / "q3", 2)
    out = tmp_path / "id"
    args = [
        "--ckpt",
        str(path),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--identity",
        "7",
        "--query-camid",
        "2",
    ]
    assert main([*args, "--query-rgb", q[0], "--query-nir", q[1], "--query-tir", q[2]]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "explanation.json",
        "query_N.png",
        "query_R.png",
        "query_T.png",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--query-rgb", "{img}"], "error: give the query's camera id with --query-camid"),
        (["--query-rgb", "{img}", "--query-camid", "0"], "error: explain a match (name a gallery item)"),
        (["--query-rgb", "{txt}", "--query-camid", "0", "--identity", "1"], "cannot read the image"),
        (["--query-rgb", "{img}", "--query-camid", "0", "--identity", "9"], "error: Grad-CAM identity 9"),
        (["--query-row", "0"], "error: --query-row needs --manifest"),
    ],
)
def test_bad_input_is_one_error_line(tmp_path: Path, capsys, args, message) -> None:
    ckpt = save_weights_checkpoint(tiny_module(), tmp_path / "m.ckpt")
    img = write_images(tmp_path / "q", 0)[0]
    (tmp_path / "notes.txt").write_text("not an image")
    fill = {"img": img, "txt": str(tmp_path / "notes.txt")}
    with pytest.raises(SystemExit) as exc:
        main(["--ckpt", str(ckpt), "--out", str(tmp_path / "o"), *(a.format(**fill) for a in args)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and message in err[0]


def test_box_mass_by_hand() -> None:
    from mdreid.explain.sanity import area_share, box_mass

    cam = np.zeros((8, 4), dtype=np.float32)
    # CUE_BOX on 8x4: rows 1..2, columns 1..2, 4 of 32 pixels
    assert area_share(8, 4) == 0.125
    cam[1:3, 1:3] = 1.0  # all inside
    assert box_mass(cam) == 1.0
    cam[7, 0] = 4.0  # 4 inside of 8 in all
    assert box_mass(cam) == 0.5
    assert box_mass(np.ones((8, 4), dtype=np.float32)) == 0.125  # a blind map: its area share
    with pytest.raises(Exception, match="no mass"):
        box_mass(np.zeros((8, 4), dtype=np.float32))


def test_cue_marks_the_identity_only_in_its_box(tmp_path: Path) -> None:
    from mdreid.data.synthetic.cue import box_pixels
    from mdreid.data.synthetic.generate import generate, read_recipe

    generate("rgbnt201", tmp_path, ids=6, cue=True)
    folder = tmp_path / "RGBNT201"
    assert read_recipe(folder)["cue"] is True
    first = sorted(folder.rglob("RGB/*.jpg"))[0].parent  # one identity's RGB folder
    train = sorted(first.glob("*.jpg"))[:2]

    def upper_patch(path: Path) -> np.ndarray:  # the median colour of the box's upper half (JPEG aside)
        image = np.asarray(Image.open(path), dtype=np.int16)
        rows, cols = box_pixels(*image.shape[:2])
        middle = (rows.start + rows.stop) // 2
        return np.median(image[rows.start + 2 : middle - 2, cols.start + 2 : cols.stop - 2], axis=(0, 1))

    a, b = (upper_patch(p) for p in train)
    assert np.abs(a - b).max() < 10  # same identity, same patch, though the bodies differ


def test_ranked_list_grid_captions_shares_and_draws_overlays(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from mdreid.reporting.plots.ranked_list import (
        BACKGROUND,
        BORDER,
        PERSON_TILE,
        GridLayout,
        ranked_list_grid,
    )
    from test_plots import hand_made

    samples, records, colours = hand_made(tmp_path)
    magenta = Image.new("RGB", (8, 8), (255, 0, 255))
    calls = []

    def explain(query, gallery, pair, sides):
        calls.append((query.paths[0], gallery.paths[0], pair, sides))
        maps = {c: SimpleNamespace(overlay=magenta) for c in "RNT"}
        return SimpleNamespace(query=maps if "query" in sides else {}, gallery=maps)

    layout = GridLayout(PERSON_TILE, rows=3, columns=4, blocks=1)
    plain = ranked_list_grid(samples, records, ("RNT", "RNT"), [0], topk=3)
    x, y = layout.origin(0, 0, 1)
    bottom = y + BORDER + PERSON_TILE[1]  # the caption band (two lines, q and g shares) at the tile's bottom
    band = np.asarray(plain.crop((x + BORDER, bottom - 6, x + BORDER + PERSON_TILE[0], bottom)))
    assert (band == BACKGROUND).all(-1).any() and (band.sum(-1) < 200).any()  # white band, dark text
    assert plain.getpixel((x + layout.cell[0] // 2, y + layout.cell[1] // 3)) != (255, 0, 255)
    drawn = ranked_list_grid(samples, records, ("RNT", "RNT"), [0], topk=3, explain=explain)
    assert len(calls) == 3 and all(c[2] == ("RNT", "RNT") for c in calls)
    assert [c[3] for c in calls] == [("query", "gallery"), ("gallery",), ("gallery",)]  # query maps once
    for column in range(4):  # query (rank-1 maps) and every gallery tile
        cx, cy = layout.origin(0, 1, column)
        assert drawn.getpixel((cx + layout.cell[0] // 2, cy + layout.cell[1] // 3)) == (255, 0, 255)


def test_eval_draws_grad_cam_overlays_in_the_ranked_lists(
    synthetic_data_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    """eval.plots_cam=true through the eval entry point: every ranked list's tiles are the Explainer's
    overlays of the tested model (the query column: its rank-1 match's maps), under the run's similarity;
    a setting under which no map would be drawn is refused before the run."""
    from conftest import TINY_OVERRIDES, compose_cfg
    from mdreid.data.data_config import DataConfig
    from mdreid.eval import evaluate
    from mdreid.explain.explainer import Explainer
    from mdreid.factory import build_datamodule, build_module
    from mdreid.process.errors import MDReIDError
    from mdreid.reporting.plots.ranked_list import BORDER, PERSON_TILE, GridLayout
    from mdreid.reporting.plots.report import LIST_PAIRS

    tiny = [o for o in TINY_OVERRIDES if not o.startswith("callbacks=")]
    common = [*tiny, f"paths.data_dir={synthetic_data_dir}", "eval.pairs=paper", "eval.similarity=paper"]
    torch.manual_seed(0)
    cfg = compose_cfg("eval.yaml", common, tmp_path / "build")
    ckpt = save_weights_checkpoint(
        build_module(cfg, build_datamodule(DataConfig.parse(cfg.data))), tmp_path / "m.ckpt"
    )
    common.append(f"ckpt_path={ckpt}")
    calls = []
    real = Explainer.match

    def spy(self, query, gallery, pair, feature="sh", items=None, sides=("query", "gallery")):
        found = real(self, query, gallery, pair, feature, items, sides)
        calls.append((pair, self.similarity, found))
        return found

    monkeypatch.setattr(Explainer, "match", spy)
    evaluate(compose_cfg("eval.yaml", [*common, "eval.plots_cam=true"], tmp_path / "cam"))
    assert {c[0] for c in calls} == set(LIST_PAIRS) and {c[1] for c in calls} == {"paper"}
    grid = Image.open(tmp_path / "cam" / "plots" / "ranked_RNT-RNT.png").convert("RGB")
    pair, _, first = calls[0]  # the first query's rank-1 match: its maps fill the query column
    assert pair == ("RNT", "RNT") and sorted(first.query) == ["N", "R", "T"]
    layout = GridLayout(PERSON_TILE, rows=3, columns=11, blocks=1)
    for row, letter in enumerate("RNT"):
        x, y = layout.origin(0, row, 0)
        tile = grid.crop((x + BORDER, y + BORDER, x + BORDER + PERSON_TILE[0], y + BORDER + PERSON_TILE[1]))
        drawn = first.query[letter].overlay.resize(PERSON_TILE, Image.Resampling.BILINEAR)
        assert np.array_equal(np.asarray(tile), np.asarray(drawn)), letter
    maps = [cam.cam for c in calls for side in (c[2].query, c[2].gallery) for cam in side.values()]
    assert sum(m.max() == pytest.approx(1.0) for m in maps) > len(maps) / 2  # real maps, mostly not blank
    for bad, message in (
        ("eval.similarity=common", "eval.similarity code, paper, not 'common'"),
        ("eval.plots=false", "which eval.plots=false leaves out"),
        ("eval.rerank=true", "which eval.rerank=true"),
    ):
        with pytest.raises(MDReIDError, match=message):
            evaluate(compose_cfg("eval.yaml", [*common, "eval.plots_cam=true", bad], tmp_path / "bad"))
