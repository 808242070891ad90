"""Evaluation plots: heatmap values, CMC lines, ranked-list tiles/borders/junk, t-SNE points, write_plots."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mdreid.data.records import Record
from mdreid.metrics import AnyToAnyReID, AnyToAnyResult, PairDistances, rank_metrics
from mdreid.metrics.functional import query_rank_stats
from mdreid.modalities import LETTERS, SUBSETS
from mdreid.process.errors import MDReIDError
from mdreid.reporting.plots import (
    cmc_figure,
    pair_heatmap,
    pick_queries,
    rank_queries,
    ranked_list_grid,
    save_figure,
    save_image,
    tsne_figure,
    write_plots,
)
from mdreid.reporting.plots.ranked_list import PERSON_TILE, VEHICLE_TILE, GridLayout
from samples import make_samples

GREEN, RED, BLACK, WHITE = (0, 255, 0), (255, 0, 0), (0, 0, 0), (255, 255, 255)


def evaluate(samples: dict, pairs="paper") -> AnyToAnyResult:
    metric = AnyToAnyReID(pairs=pairs)
    metric.update(**samples)
    return metric.compute()


def tile_colour(colour: tuple[int, int, int], modality: int) -> tuple[int, int, int]:
    """The colour of one modality image of a record: the modality shifts the blue channel a little."""
    return colour[0], colour[1], min(255, colour[2] + 10 * modality)


def write_record(folder: Path, index: int, colour: tuple[int, int, int], size=(32, 64)) -> Record:
    """A triplet of solid-colour JPEGs (``tile_colour``)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for m, letter in enumerate(LETTERS):
        path = folder / f"{index:04d}_{letter}.jpg"
        Image.new("RGB", size, tile_colour(colour, m)).save(path, quality=95)
        paths.append(str(path))
    return Record(paths=tuple(paths), pid=0, camid=0, index=index, split="test")


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as img:
        assert img.format == "PNG"
        return img.size


# ---------------------------------------------------------------- heatmap / CMC


def test_heatmap_cells_equal_rows_and_blank_unevaluated(tmp_path):
    result = evaluate(make_samples())
    for metric in ("mAP", "R1"):
        fig = pair_heatmap(result, metric)
        ax = fig.axes[0]
        texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
        expected = {
            (SUBSETS.index(r["query"]), SUBSETS.index(r["gallery"])): f"{r[metric]:.1f}" for r in result.rows
        }
        assert texts == expected and len(expected) == 11
        assert int(np.ma.getmaskarray(ax.images[0].get_array()).sum()) == 49 - 11
        assert metric in ax.get_title() and "similarity=code" in ax.get_title()
        width, height = png_size(save_figure(fig, tmp_path / f"{metric}.png"))
        assert width >= 600 and height >= 500
    with pytest.raises(MDReIDError, match="heatmap metric"):
        pair_heatmap(result, "accuracy")


def test_cmc_lines_follow_the_curves(tmp_path):
    result = evaluate(make_samples())
    ax = cmc_figure(result, max_rank=12).axes[0]
    names = ["RNT->RNT", "RT->NT", "RT->N", "R->N", "R->NT", "R->R"]
    assert [line.get_label().split()[0] for line in ax.get_lines()] == names
    for line, name in zip(ax.get_lines(), names, strict=True):
        np.testing.assert_allclose(line.get_ydata(), result.cmc[name][:12].numpy())
        np.testing.assert_array_equal(line.get_xdata(), np.arange(1, 13))
        assert f"mAP {result.row(*name.split('->'))['mAP']:.1f}" in line.get_label()
    explicit = cmc_figure(result, pairs=["tr->n", "N->N"]).axes[0]
    assert [line.get_label().split()[0] for line in explicit.get_lines()] == ["RT->N", "N->N"]
    with pytest.raises(MDReIDError, match="were not evaluated"):
        cmc_figure(result, pairs=["T->RN"])
    width, height = png_size(save_figure(cmc_figure(result), tmp_path / "cmc.png"))
    assert width >= 600 and height >= 450


# ---------------------------------------------------------------- ranked lists


def hand_made(tmp_path: Path, size=(32, 64)) -> tuple[dict, list[Record], list[tuple[int, int, int]]]:
    """Query 0 (also a gallery item: its own copy) and gallery items 1..5 at growing angle from it.

    Item 1 is junk (same pid and camera) and the closest; 2 and 4 are true matches, 3 and 5 wrong ones.
    """
    n = 6
    angle = 0.2 * torch.arange(n, dtype=torch.float32)
    feat = torch.stack([angle.cos(), angle.sin()], dim=-1)[:, None, :].expand(n, 3, 2).clone()
    samples = {
        "sp": feat,
        "sh": feat.clone(),
        "present": torch.ones(n, 3, dtype=torch.bool),
        "pid": torch.tensor([7, 7, 7, 8, 7, 9]),
        "camid": torch.tensor([0, 0, 1, 1, 2, 0]),
        "sceneid": torch.tensor([0, 1, 0, 1, 1, 0]),
        "index": torch.arange(n),
        "is_query": torch.tensor([True, False, False, False, False, False]),
        "is_gallery": torch.ones(n, dtype=torch.bool),
    }
    colours = [(30 + 40 * i, 200 - 30 * i, 60) for i in range(n)]
    records = [write_record(tmp_path, i, c, size) for i, c in enumerate(colours)]
    return samples, records, colours


def close(a, b, tol: int = 12) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def test_ranked_list_borders_and_junk(tmp_path):
    samples, records, colours = hand_made(tmp_path)
    ranked = rank_queries(samples, ("RNT", "RNT"), [0], topk=3)
    assert ranked[0].query == 0
    assert ranked[0].gallery == (2, 3, 4)  # 0 (own copy) and 1 (junk, closest) skipped
    assert ranked[0].matches == (True, False, True)
    assert list(ranked[0].distances) == sorted(ranked[0].distances)

    img = ranked_list_grid(samples, records, ("RNT", "RNT"), [0], topk=3)
    layout = GridLayout(PERSON_TILE, rows=3, columns=4, blocks=1)
    assert img.size == layout.size
    for column, (border, item) in enumerate([(BLACK, 0), (GREEN, 2), (RED, 3), (GREEN, 4)]):
        for row in range(3):  # the same rectangle colour on every modality row of a column
            x, y = layout.origin(0, row, column)
            assert img.getpixel((x + 1, y + 1)) == border
            assert img.getpixel((x + layout.cell[0] - 2, y + layout.cell[1] // 2)) == border
            centre = img.getpixel((x + layout.cell[0] // 2, y + layout.cell[1] // 2))
            assert close(centre, tile_colour(colours[item], row))
            assert not close(centre, tile_colour(colours[1], row))

    # the scene rule makes item 2 (same pid, same scene 0) junk instead of item 1
    assert rank_queries(samples, ("R", "R"), [0], junk="scene", topk=3)[0].gallery == (1, 3, 4)


def test_ranked_list_breaks_ties_as_the_metric_scores_them(tmp_path):
    """A match (2) and a non-match (3) at the same distance: the non-match is shown first, although it has the
    higher gallery position, because that is the rank the metric gives the match (docs/method.md D7)."""
    samples, _, _ = hand_made(tmp_path)
    for name in ("sp", "sh"):
        samples[name][3] = samples[name][2]
    ranked = rank_queries(samples, ("RNT", "RNT"), [0], topk=3)[0]
    assert ranked.gallery == (3, 2, 4) and ranked.matches == (False, True, True)
    assert ranked.distances[0] == ranked.distances[1]
    feats = [samples[k] for k in ("sp", "sh", "present")]
    dist = PairDistances(*(f[:1] for f in feats), *feats).distance("RNT", "RNT", "code")
    pid, camid = samples["pid"], samples["camid"]
    stats = query_rank_stats(dist, pid[:1], pid, camid[:1], camid)
    assert int(stats.first_hit[0]) == ranked.matches.index(True)  # the metric's rank of the first match


def test_fewer_valid_items_than_topk_leaves_blank_columns(tmp_path):
    samples, records, _ = hand_made(tmp_path)
    assert len(rank_queries(samples, ("R", "R"), [0], topk=10)[0].gallery) == 4
    img = ranked_list_grid(samples, records, ("R", "R"), [0], topk=6)
    layout = GridLayout(PERSON_TILE, rows=1, columns=7, blocks=1)
    x, y = layout.origin(0, 0, 5)
    assert img.getpixel((x + 1, y + 1)) == WHITE


@pytest.mark.parametrize("pair", [("R", "N"), ("RT", "NT"), ("T", "T"), ("RNT", "RNT"), ("N", "RT")])
def test_ranked_list_rows_are_the_pair_modalities(tmp_path, pair):
    samples, records, _ = hand_made(tmp_path)
    img = ranked_list_grid(samples, records, pair, [0], topk=2)
    used = sorted(set(pair[0]) | set(pair[1]), key=LETTERS.index)
    layout = GridLayout(PERSON_TILE, rows=len(used), columns=3, blocks=1)
    assert img.size == layout.size
    for row, letter in enumerate(used):
        qx, qy = layout.origin(0, row, 0)
        gx, gy = layout.origin(0, row, 1)
        assert img.getpixel((qx + 1, qy + 1)) == (BLACK if letter in pair[0] else WHITE)
        assert img.getpixel((gx + 1, gy + 1)) == (GREEN if letter in pair[1] else WHITE)


def test_ranked_list_vehicle_tiles_from_stitched_strips(tmp_path):
    samples, _, _ = hand_made(tmp_path)
    records = []
    for i in range(6):
        path = tmp_path / f"strip{i}.jpg"
        Image.new("RGB", (768, 128), (20 * i, 90, 150)).save(path)
        records.append(Record(paths=(str(path),) * 3, pid=0, camid=0, index=i, split="test", stitched=True))
    img = ranked_list_grid(samples, records, ("RT", "NT"), [0], topk=2)
    assert img.size == GridLayout(VEHICLE_TILE, rows=3, columns=3, blocks=1).size
    width, height = png_size(save_image(img, tmp_path / "grid.png"))
    assert (width, height) == img.size


def test_ranked_list_bad_input(tmp_path):
    samples, records, _ = hand_made(tmp_path)
    with pytest.raises(MDReIDError, match="query_rows"):
        rank_queries(samples, ("R", "R"), [1])  # only one query
    with pytest.raises(MDReIDError, match="junk"):
        rank_queries(samples, ("R", "R"), [0], junk="pid")
    samples["present"][0, 1] = False
    with pytest.raises(MDReIDError, match="lack a modality of RN"):
        rank_queries(samples, ("RN", "R"), [0])
    with pytest.raises(MDReIDError, match="outside the 2 records"):
        ranked_list_grid(samples, records[:2], ("R", "R"), [0])


def test_pick_queries_worst_ap_first_then_seeded_random():
    samples = make_samples(n=30, seed=1)
    samples["present"][5, 0] = False  # query 5 cannot be scored on R->N
    picked = pick_queries(samples, ("R", "N"), 5, seed=3)
    assert picked == pick_queries(samples, ("R", "N"), 5, seed=3)
    assert len(set(picked)) == 5 and 5 not in picked
    pd = PairDistances(
        samples["sp"], samples["sh"], samples["present"], samples["sp"], samples["sh"], samples["present"]
    )
    ref = rank_metrics(
        pd.distance("R", "N"),
        samples["pid"],
        samples["pid"],
        samples["camid"],
        samples["camid"],
        return_per_query=True,
    )
    ap = ref["ap"].clone()
    ap[torch.isnan(ap)] = math.inf
    assert picked[:3] == torch.sort(ap, stable=True).indices[:3].tolist()
    assert picked[3:] == sorted(picked[3:])
    others = {tuple(pick_queries(samples, ("R", "N"), 5, seed=s)[3:]) for s in range(6)}
    assert len(others) > 1  # the random part depends on the seed


# ---------------------------------------------------------------- t-SNE


def scatter_offsets(fig) -> list[np.ndarray]:
    return [np.concatenate([c.get_offsets() for c in ax.collections]) for ax in fig.axes]


def test_tsne_panels_points_and_determinism(tmp_path):
    samples = make_samples()
    samples["present"][0, 2] = False  # sample 0 (pid 0) has no TIR point
    fig = tsne_figure(samples, num_ids=2, seed=0, max_per_id=4)
    offsets = scatter_offsets(fig)
    assert len(fig.axes) == 2 and [len(o) for o in offsets] == [23, 23]  # pids 0, 1 (5 each) x 4 x 3 - 1
    assert len({tuple(c.get_facecolor()[0]) for c in fig.axes[1].collections}) == 2  # one colour per id
    again = scatter_offsets(tsne_figure(samples, num_ids=2, seed=0, max_per_id=4))
    for a, b in zip(offsets, again, strict=True):
        np.testing.assert_array_equal(a, b)
    width, height = png_size(save_figure(fig, tmp_path / "tsne.png"))
    assert width >= 1000 and height >= 500

    baseline = tsne_figure(make_samples(with_sh=False), num_ids=2, max_per_id=3)
    assert len(baseline.axes) == 1 and len(scatter_offsets(baseline)[0]) == 18


# ---------------------------------------------------------------- write_plots


def test_write_plots_writes_every_png_atomically(tmp_path):
    samples = make_samples()
    records = [write_record(tmp_path / "img", i, (10 * i, 80, 120), size=(16, 32)) for i in range(14)]
    out = tmp_path / "plots"
    written = write_plots(evaluate(samples), samples, records, out, num_queries=2)
    names = ["heatmap_mAP", "heatmap_R1", "cmc", "ranked_RNT-RNT", "ranked_R-N", "ranked_RT-NT", "tsne"]
    assert list(written) == names
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.png" for n in names)
    for path in written.values():
        assert path.parent == out and min(png_size(path)) > 100


def test_write_plots_skips_pairs_without_comparable_features(tmp_path, caplog):
    samples = make_samples(with_sh=False)
    records = [write_record(tmp_path / "img", i, (10 * i, 80, 120), size=(16, 32)) for i in range(14)]
    result = evaluate(samples, pairs=["RNT->RNT", "RT->NT"])
    written = write_plots(result, samples, records, tmp_path / "plots", num_queries=2)
    assert "ranked_R-N" not in written and {"ranked_RNT-RNT", "ranked_RT-NT", "tsne"} <= set(written)
    assert "R->N" in caplog.text
