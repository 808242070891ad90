"""AnyToAnyReID: numbers equal the functional pieces, order/duplicate invariance, junk rules, DDP."""

from __future__ import annotations

import json
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mdreid.metrics import AnyToAnyReID, PairDistances, PairSelection, rank_metrics
from mdreid.metrics.groups import MISMATCHED, PAPER_PAIRS
from mdreid.modalities import SUBSETS, all_pairs
from mdreid.process.errors import MDReIDError
from samples import make_samples


def feed(metric: AnyToAnyReID, data: dict, order: list[int], batch: int = 4) -> AnyToAnyReID:
    for s in range(0, len(order), batch):
        rows = torch.tensor(order[s : s + batch])
        metric.update(**{k: None if v is None else v[rows] for k, v in data.items()})
    return metric


def test_rows_equal_functional_pipeline():
    data = make_samples()
    result = feed(AnyToAnyReID(pairs="all"), data, list(range(14))).compute()
    assert [(r["query"], r["gallery"]) for r in result.rows] == all_pairs()
    pd = PairDistances(data["sp"], data["sh"], data["present"], data["sp"], data["sh"], data["present"])
    for q, g in [("RNT", "RNT"), ("RT", "NT"), ("N", "RT")]:
        ref = rank_metrics(pd.distance(q, g), data["pid"], data["pid"], data["camid"], data["camid"])
        row = result.row(q, g)
        assert row["mAP"] == pytest.approx(100 * ref["mAP"])
        assert row["mINP"] == pytest.approx(100 * ref["mINP"])
        assert [row["R1"], row["R5"], row["R10"]] == pytest.approx(
            [100 * float(ref["cmc"][k]) for k in (0, 4, 9)]
        )
        assert row["num_valid"] == ref["num_valid"] == 14
        torch.testing.assert_close(result.cmc[f"{q}->{g}"], 100 * ref["cmc"].cpu())


@pytest.mark.parametrize("similarity", ["code", "paper"])
@pytest.mark.parametrize("missing", [False, True])
def test_every_pair_equals_its_own_ranking_despite_shared_matrices(similarity, missing):
    """Pairs with identical matrices are ranked once (``distinct_pairs``); with modalities missing, pairs
    that differ only by which gallery items are absent must NOT be merged. Chunks of 5 rows reuse buffers."""
    data = make_samples(seed=4, n=15)
    if missing:
        data["present"][[1, 6], 1] = False  # two samples without N, one without T
        data["present"][9, 2] = False
    result = feed(AnyToAnyReID(pairs="all", similarity=similarity, chunk_size=5), data, list(range(15)))
    result = result.compute()
    pd = PairDistances(data["sp"], data["sh"], data["present"], data["sp"], data["sh"], data["present"])
    distinct, which = pd.distinct_pairs(all_pairs(), similarity)
    assert len(which) == 49
    expected_classes = {("code", False): 25, ("paper", False): 49}
    if not missing:
        assert len(distinct) == expected_classes[similarity, missing]
    else:
        assert len(distinct) > 25  # R->RN and R->RT mark different gallery items absent now
        assert which[all_pairs().index(("R", "RN"))] != which[all_pairs().index(("R", "RT"))]
    for q, g in all_pairs():
        ref = rank_metrics(
            pd.distance(q, g, similarity), data["pid"], data["pid"], data["camid"], data["camid"]
        )
        row = result.row(q, g)
        assert row["num_valid"] == ref["num_valid"]
        assert row["mAP"] == pytest.approx(100 * ref["mAP"], abs=1e-9)
        assert row["mINP"] == pytest.approx(100 * ref["mINP"], abs=1e-9)
        torch.testing.assert_close(result.cmc[f"{q}->{g}"], 100 * ref["cmc"].cpu())


def test_duplicated_and_shuffled_updates_give_identical_results():
    data = make_samples(seed=1)
    plain = feed(AnyToAnyReID(), data, list(range(14))).compute()
    shuffled = torch.randperm(14, generator=torch.Generator().manual_seed(3)).tolist()
    messy = feed(AnyToAnyReID(), data, shuffled + [0, 5, 13], batch=3).compute()
    assert messy.to_dict() == plain.to_dict()


def test_evaluate_returns_the_computed_result_with_the_samples_it_scored():
    metric = feed(AnyToAnyReID(pairs="paper"), make_samples(seed=4), list(range(14)))
    evaluation = metric.evaluate()
    assert evaluation.result.to_dict() == metric.compute().to_dict()
    expected = metric.samples()
    assert set(evaluation.samples) == set(expected)
    for name, value in expected.items():
        assert torch.equal(evaluation.samples[name], value) and evaluation.samples[name].device.type == "cpu"


def test_scene_rule_differs_from_camera_rule():
    # query (pid 0, cam 0, scene 0); gallery by distance: A (pid 0, cam 1, scene 0), B (pid 1), C (pid 0, cam 0, scene 1)
    vectors = torch.tensor([[1.0, 0.0], [1.0, 0.1], [1.0, 1.0], [0.0, 1.0]])
    feats = vectors[:, None, :].expand(4, 3, 2).contiguous()
    data = {
        "sp": feats,
        "sh": feats.clone(),
        "present": torch.ones(4, 3, dtype=torch.bool),
        "pid": torch.tensor([0, 0, 1, 0]),
        "camid": torch.tensor([0, 1, 0, 0]),
        "sceneid": torch.tensor([0, 0, 0, 1]),
        "index": torch.arange(4),
        "is_query": torch.tensor([True, False, False, False]),
        "is_gallery": torch.tensor([False, True, True, True]),
    }
    camera = feed(AnyToAnyReID(pairs=["RNT->RNT"], junk="camera"), data, [0, 1, 2, 3]).compute()
    scene = feed(AnyToAnyReID(pairs=["RNT->RNT"], junk="scene"), data, [0, 1, 2, 3]).compute()
    # camera rule: C is junk, ranking A(hit) B; scene rule: A is junk, ranking B C(hit)
    assert (camera.rows[0]["mAP"], camera.rows[0]["R1"]) == pytest.approx((100.0, 100.0))
    assert (scene.rows[0]["mAP"], scene.rows[0]["R1"], scene.rows[0]["R5"]) == pytest.approx(
        (50.0, 0.0, 100.0)
    )


def test_separate_query_and_gallery_splits_with_overlapping_indices():
    data = make_samples(seed=2, n=12)
    data["is_query"] = torch.arange(12) < 4
    data["is_gallery"] = ~data["is_query"]
    data["index"] = torch.where(data["is_query"], torch.arange(12), torch.arange(12) - 4)  # both start at 0
    result = feed(AnyToAnyReID(pairs="paper"), data, list(range(12))).compute()
    assert result.row("RNT", "RNT")["num_valid"] == 4


def test_missing_modality_query_is_dropped_and_sp_none_works():
    data = make_samples(seed=4)
    data["present"][2, 0] = False  # sample 2 lacks RGB
    result = feed(
        AnyToAnyReID(pairs=["R->N", "N->N", "N->R"]), data | {"sp": None}, list(range(14))
    ).compute()
    assert result.row("R", "N")["num_valid"] == 13
    assert result.row("N", "N")["num_valid"] == 14
    # the counts behind each pair: queries with Q's modalities, gallery items with G's
    assert [result.row("R", "N")[k] for k in ("num_query", "num_gallery")] == [13, 14]
    assert [result.row("N", "R")[k] for k in ("num_query", "num_gallery")] == [14, 13]


def test_groups_scalars_and_serialisation():
    result = feed(AnyToAnyReID(pairs="all"), make_samples(seed=5), list(range(14))).compute()
    rnt = result.row("RNT", "RNT")
    scalars = result.scalars("val")
    assert scalars["val/score"] == pytest.approx((rnt["mAP"] + rnt["R1"]) / 2)
    assert scalars["val/RT->NT/R5"] == result.row("RT", "NT")["R5"]
    assert scalars["val/matched/RNT->RNT/mAP"] == rnt["mAP"]
    avg4 = sum(result.row(q, g)["mAP"] for q, g in MISMATCHED) / 4
    assert scalars["val/mismatched/avg4/mAP"] == pytest.approx(avg4)
    avg42 = sum(r["R1"] for r in result.rows if r["query"] != r["gallery"]) / 42
    assert scalars["val/mismatched/avg42/R1"] == pytest.approx(avg42)
    assert "missing/avg/mAP" in result.groups
    assert json.loads(result.to_json())["rows"][0]["query"] == "R"
    csv_lines = result.to_csv().splitlines()
    assert csv_lines[0] == "query,gallery,mAP,R1,R5,R10,mINP,num_valid,num_query,num_gallery"
    assert len(csv_lines) == 50
    paper = feed(AnyToAnyReID(pairs="paper"), make_samples(seed=5), list(range(14))).compute()
    assert "mismatched/avg42/mAP" not in paper.groups and "mismatched/avg4/mAP" in paper.groups


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_pair_resolution_and_validation():
    assert PairSelection.parse("paper").pairs == PAPER_PAIRS and len(PAPER_PAIRS) == 11
    explicit = PairSelection.parse(["tr->n", ("N", "RT"), "RT->N"])
    assert explicit.pairs == (("RT", "N"), ("N", "RT")) and explicit.plain() == ["RT->N", "N->RT"]
    for named in ("all", "paper", ["R->N", "RNT->T"]):  # the plain form a checkpoint stores reads back
        assert PairSelection.parse(PairSelection.parse(named).plain()) == PairSelection.parse(named)
    assert AnyToAnyReID(pairs=explicit).pairs is explicit
    assert AnyToAnyReID(pairs=["r->n"]).pairs == PairSelection((("R", "N"),))
    for bad in ("some", ["R->X"], ["RR->N"], ["R-N"], [], 3, [7]):
        with pytest.raises(MDReIDError, match=", ".join(SUBSETS)):
            PairSelection.parse(bad)
        with pytest.raises(MDReIDError, match=", ".join(SUBSETS)):
            AnyToAnyReID(pairs=bad)  # Python users' plain values are checked at the metric's boundary
    with pytest.raises(MDReIDError, match="camera, scene"):
        AnyToAnyReID(junk="view")
    with pytest.raises(MDReIDError, match="code, paper"):
        AnyToAnyReID(similarity="cos")
    metric = feed(AnyToAnyReID(), make_samples(), [0, 1])
    with pytest.raises(MDReIDError, match="consistent"):
        metric.update(**make_samples() | {"sp": None})
    with pytest.raises(MDReIDError, match="no samples"):
        AnyToAnyReID().compute()


def _ddp_worker(rank: int, port: int, data: dict, shards: list[list[list[int]]], out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        metric = AnyToAnyReID(pairs="all")
        for rows in shards[rank]:
            metric.update(**{k: v[torch.tensor(rows)] for k, v in data.items()})
        evaluation = metric.evaluate()  # synchronised like compute: every rank scores and keeps all samples
        assert len(evaluation.samples["pid"]) == 7
        torch.save(evaluation.result.to_dict(), f"{out}/rank{rank}_evaluate.pt")
        torch.save(metric.compute().to_dict(), f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_uneven_shards_equal_single_process(tmp_path):
    data = make_samples(seed=6, n=7)
    # an interleaving sampler's shards, rank 0 with a padded repeat of sample 0 in an extra batch
    shards = [[[0, 2, 4, 6], [0]], [[1, 3, 5]]]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(port, data, shards, str(tmp_path)), nprocs=2)
    single = feed(AnyToAnyReID(pairs="all"), data, list(range(7))).compute().to_dict()
    for rank in (0, 1):
        assert torch.load(tmp_path / f"rank{rank}.pt") == single
        assert torch.load(tmp_path / f"rank{rank}_evaluate.pt") == single


def test_queries_without_a_valid_match_are_counted_and_reported(caplog: pytest.LogCaptureFixture) -> None:
    """The official protocol drops a query whose identity has no gallery item outside the junk; the report
    says so, with the count, instead of dropping it silently."""
    from mdreid.reporting.reports import warn_unscored

    data = make_samples(seed=6)
    data["pid"] = data["pid"].clone()
    data["pid"][0] = 7  # an identity no other sample has: only the query's own copy, which is junk
    result = feed(AnyToAnyReID(pairs="paper"), data, list(range(14))).compute()
    row = result.row("RNT", "RNT")
    assert (row["num_valid"], row["num_query"], row["num_gallery"]) == (13, 14, 14)
    with caplog.at_level("WARNING", logger="mdreid.reporting.reports"):
        warn_unscored(result)
    assert "11 of 11 pairs have queries without a valid gallery match" in caplog.text
    assert ": 1 of 14 queries" in caplog.text
    caplog.clear()
    warn_unscored(feed(AnyToAnyReID(pairs="paper"), make_samples(seed=6), list(range(14))).compute())
    assert caplog.text == ""
