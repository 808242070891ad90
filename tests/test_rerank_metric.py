"""Re-ranking inside the any-to-any metric: each pair re-ranked with Q->Q, G->G and Q->G distances."""

from __future__ import annotations

import pytest
import torch

from mdreid.config.hydra import compose_config
from mdreid.metrics import AnyToAnyReID, PairDistances, rank_metrics
from mdreid.metrics.eval_config import EvalConfig
from mdreid.modalities import subset_indices
from mdreid.process.errors import MDReIDError
from samples import make_samples
from test_rerank import paper_rerank

PAIRS = ["RT->NT", "R->N", "RNT->RNT", "N->RN"]


def split_samples() -> dict:
    """8 queries and 22 gallery items, a few of them missing a modality."""
    data = make_samples(seed=3, n=30)
    data["is_query"] = torch.arange(30) < 8
    data["is_gallery"] = ~data["is_query"]
    data["present"][[2, 12, 17], 1] = False
    data["present"][[5, 20], 2] = False
    return data


def expected_row(data: dict, q_subset: str, g_subset: str, mode: str, k1: int, k2: int, lam: float) -> dict:
    """The pair's ranking metrics on the dense paper re-ranking of its three distance matrices."""
    q, g = data["is_query"], data["is_gallery"]
    side = {
        name: (data["sp"][keep], data["sh"][keep], data["present"][keep])
        for name, keep in (("q", q), ("g", g))
    }

    def dist(a: str, b: str, sa: str, sb: str) -> torch.Tensor:
        return PairDistances(*side[a], *side[b]).distance(sa, sb, mode).double()

    q_ok = side["q"][2][:, list(subset_indices(q_subset))].all(1)
    g_ok = side["g"][2][:, list(subset_indices(g_subset))].all(1)
    q_g = dist("q", "g", q_subset, g_subset)[q_ok][:, g_ok]
    q_q = dist("q", "q", q_subset, q_subset)[q_ok][:, q_ok]
    g_g = dist("g", "g", g_subset, g_subset)[g_ok][:, g_ok]
    full = torch.full((int(q.sum()), int(g.sum())), torch.inf, dtype=torch.float64)
    full[q_ok.nonzero()[:, 0][:, None], g_ok.nonzero()[:, 0][None, :]] = torch.from_numpy(
        paper_rerank(q_g, q_q, g_g, k1, k2, lam)
    )
    return rank_metrics(full, data["pid"][q], data["pid"][g], data["camid"][q], data["camid"][g])


@pytest.mark.parametrize("similarity", ["code", "paper"])
def test_every_pair_equals_the_dense_reranking_of_its_matrices(similarity) -> None:
    data = split_samples()
    metric = AnyToAnyReID(
        pairs=PAIRS,
        similarity=similarity,
        rerank=True,
        rerank_k1=6,
        rerank_k2=3,
        rerank_lambda=0.3,
        chunk_size=3,
    )
    metric.update(**data)
    result = metric.compute()
    plain = AnyToAnyReID(pairs=PAIRS, similarity=similarity)
    plain.update(**data)
    plain_result = plain.compute()
    for name in PAIRS:
        q_subset, g_subset = name.split("->")
        ref = expected_row(data, q_subset, g_subset, similarity, 6, 3, 0.3)
        row = result.row(q_subset, g_subset)
        assert row["mAP"] == pytest.approx(100 * ref["mAP"], abs=1e-9)
        assert row["mINP"] == pytest.approx(100 * ref["mINP"], abs=1e-9)
        torch.testing.assert_close(result.cmc[name], 100 * ref["cmc"].cpu())
        assert row["num_query"] == plain_result.row(q_subset, g_subset)["num_query"]
    assert any(result.row(*p.split("->"))["mAP"] != plain_result.row(*p.split("->"))["mAP"] for p in PAIRS)
    assert result.to_dict()["rerank"] == {"k1": 6, "k2": 3, "lambda_value": 0.3}
    assert plain_result.to_dict()["rerank"] is None


def test_bad_rerank_settings_fail_at_construction() -> None:
    with pytest.raises(MDReIDError, match="k1 must be an integer >= 1"):
        AnyToAnyReID(rerank=True, rerank_k1=0)
    with pytest.raises(MDReIDError, match="eval.rerank: must be true or false"):
        AnyToAnyReID(rerank="yes")


def test_eval_config_reaches_the_metric() -> None:
    cfg = compose_config("eval", ["ckpt_path=x", "eval.rerank=true", "eval.rerank_k2=1"])
    metric = EvalConfig.parse(cfg.eval).build_metric(junk="camera")  # what the module and mdreid.score build
    assert metric.rerank is not None and (metric.rerank.k1, metric.rerank.k2) == (20, 1)
    assert metric.rerank.lambda_value == pytest.approx(0.3)


def test_plots_leave_out_ranked_lists_of_the_plain_ranking(tmp_path, caplog) -> None:
    """With re-ranking the scores no longer follow the plain distances the ranked lists draw."""
    from mdreid.reporting.plots import write_plots

    data = make_samples()
    metric = AnyToAnyReID(pairs="paper", rerank=True, rerank_k1=4, rerank_k2=2)
    metric.update(**data)
    with caplog.at_level("WARNING"):
        written = write_plots(metric.compute(), data, [], tmp_path, num_queries=2)
    assert list(written) == ["heatmap_mAP", "heatmap_R1", "cmc", "tsne"]
    assert "no ranked lists" in caplog.text


def test_the_module_builds_its_metrics_with_the_eval_section(tiny_cfg) -> None:
    from types import SimpleNamespace

    from mdreid.factory import build_module

    cfg = tiny_cfg("train.yaml", "eval.rerank=true", "eval.rerank_lambda=0.5")
    module = build_module(cfg, SimpleNamespace(num_classes=12, num_cameras=3, junk_rule="camera"))
    assert module.test_metric.rerank.lambda_value == 0.5 and module.val_metric.rerank.k1 == 20
