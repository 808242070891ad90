"""The ``eval`` section is read once as ``EvalConfig`` (with ``eval.pairs`` as a ``PairSelection``), the
``runtime`` section and the trainer flags mdreid acts on as typed views, the top-level keys as ``RunConfig``:
a misspelt key or a bad value is one ``MDReIDError`` naming it and what is allowed, and ``eval.pairs`` keeps its
typed value from the command line to the metric and back out of a checkpoint."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from checkpoint_files import save_checkpoint
from conftest import compose_cfg
from mdreid.config.hydra import TrainerFlags, compose_config, configure_threads
from mdreid.config.run import RunConfig
from mdreid.config.sections import typed_view
from mdreid.factory import build_module, load_module
from mdreid.feature_file import FORMAT
from mdreid.metrics import AnyToAnyReID, PairSelection
from mdreid.metrics.eval_config import EvalConfig
from mdreid.module import ReIDModule
from mdreid.process.errors import MDReIDError
from mdreid.score import score
from test_robustness import cli, error_line

EVAL_KEYS = (
    "pairs, similarity, max_rank, chunk_size, rerank, rerank_k1, rerank_k2, rerank_lambda, save_features, "
    "unseen_cameras, plots, plots_cam"
)
PAIRS_HELP = (
    "use 'all', 'paper', or a list of 'Q->G' strings / (Q, G) tuples with Q, G in R, N, T, RN, RT, NT, RNT"
)


def eval_section(*overrides: str) -> EvalConfig:
    return EvalConfig.parse(compose_config("eval", ["ckpt_path=x", *overrides]).eval)


def test_the_eval_group_sets_the_eval_key_in_every_entry_point() -> None:
    for name in ("train", "eval", "score"):
        cfg = compose_config(name, ["ckpt_path=x"] if name == "eval" else [])
        assert EvalConfig.parse(cfg.eval) == EvalConfig()  # conf/eval/default.yaml holds the defaults
        assert "plots" not in cfg and "torch_threads" not in cfg and cfg.runtime.torch_threads == "auto"
    assert compose_config("pretrain").runtime.torch_threads is None


def test_unknown_eval_key_names_it_and_the_allowed_keys() -> None:
    with pytest.raises(MDReIDError) as err:
        eval_section("+eval.pairz=all")
    assert str(err.value) == f"eval: unknown key(s) pairz; allowed: {EVAL_KEYS}"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("eval.pairs=['R->X']", f"eval.pairs: bad modality subset 'X': {PAIRS_HELP}"),
        ("eval.pairs=['R-N']", f"eval.pairs: bad pair 'R-N': {PAIRS_HELP}"),
        ("eval.pairs=some", f"eval.pairs: unknown preset 'some': {PAIRS_HELP}"),
        ("eval.plots=maybe", "eval.plots='maybe': expected true or false"),
        ("eval.max_rank=ten", "eval.max_rank='ten': expected an integer"),
        ("eval.chunk_size=1.5", "eval.chunk_size=1.5: expected an integer or null"),
        ("eval.similarity=cosine", "eval.similarity: unknown mode 'cosine': use one of code, paper, common"),
        ("eval.unseen_cameras=drop", "eval.unseen_cameras='drop': use one of error, no_embedding"),
        ("eval.rerank_k1=0", "k1 must be an integer >= 1"),
    ],
)
def test_bad_eval_value_names_the_key_and_the_allowed_values(override: str, message: str) -> None:
    with pytest.raises(MDReIDError) as err:
        eval_section(override)
    assert message in str(err.value)


def test_pairs_are_typed_from_the_command_line_to_the_metric(tiny_cfg) -> None:
    evaluation = EvalConfig.parse(tiny_cfg("train.yaml", "eval.pairs=['rt->NT','R->N','RT->NT']").eval)
    assert evaluation.pairs == PairSelection((("RT", "NT"), ("R", "N")))
    data = SimpleNamespace(num_classes=4, num_cameras=2, junk_rule="camera")
    module = build_module(tiny_cfg("train.yaml"), data, evaluation)
    assert module.test_metric.pairs is evaluation.pairs and module.val_metric.pairs is evaluation.pairs
    assert module.hparams["evaluation"]["pairs"] == ["RT->NT", "R->N"]  # plain data in the hyper-parameters
    assert eval_section("eval.pairs=paper").plain()["pairs"] == "paper"


def test_python_users_give_plain_values_checked_at_the_boundary() -> None:
    assert EvalConfig(pairs="paper").pairs == PairSelection.parse("paper")
    assert AnyToAnyReID(pairs=("R->N",)).pairs == PairSelection((("R", "N"),))
    with pytest.raises(MDReIDError, match="eval.pairs: bad pair"):
        EvalConfig(pairs=["RN"])


def test_pairs_round_trip_through_a_checkpoint(tiny_cfg, tmp_path: Path) -> None:
    path = tmp_path / "m.ckpt"
    saved = save_checkpoint(tiny_cfg, path, "eval.pairs=['RT->NT','R->N']", "eval.plots=false")
    payload = torch.load(path, weights_only=True)  # plain data: loads without trusting anything
    stored = payload[ReIDModule.CHECKPOINT_HYPER_PARAMS_KEY]["evaluation"]
    assert stored["pairs"] == ["RT->NT", "R->N"] and stored["plots"] is False
    rebuilt = load_module(path)  # what export does: the checkpoint's own eval section
    assert rebuilt.test_metric.pairs == saved.test_metric.pairs == PairSelection((("RT", "NT"), ("R", "N")))
    paper = load_module(path, evaluation=EvalConfig(pairs="paper"))  # eval's run section wins
    assert paper.test_metric.pairs == PairSelection.parse("paper")


def test_runtime_threads_keep_auto_null_and_counts(tiny_cfg) -> None:
    before = torch.get_num_threads()
    try:
        configure_threads(tiny_cfg("train.yaml", "runtime.torch_threads=1"))
        assert torch.get_num_threads() == 1
        for bad in ("runtime.torch_threads=0", "runtime.torch_threads=many", "runtime.torch_threads=true"):
            with pytest.raises(
                MDReIDError, match=r"^runtime\.torch_threads=.*: use auto, null or a positive integer$"
            ):
                configure_threads(tiny_cfg("train.yaml", bad))
        with pytest.raises(MDReIDError, match="runtime: unknown key"):
            configure_threads(tiny_cfg("train.yaml", "+runtime.threads=2"))
    finally:
        torch.set_num_threads(before)


def test_top_level_keys_and_trainer_flags_are_typed() -> None:
    run = RunConfig.parse(compose_config("train", ["init_from=/w/a.ckpt", "test=false"]))
    assert (run.init_from, run.test, run.ckpt_path, run.optimized_metric) == (
        "/w/a.ckpt",
        False,
        None,
        "val/score",
    )
    assert RunConfig.parse(compose_config("export", ["ckpt_path=x", "image_size=[32,16]"])).image_size == [
        32,
        16,
    ]
    with pytest.raises(MDReIDError, match=r"^test='maybe': expected true or false$"):
        RunConfig.parse(compose_config("train", ["test=maybe"]))
    with pytest.raises(MDReIDError, match=r"^trust_checkpoint=1: expected true or false$"):
        RunConfig.parse(compose_config("eval", ["ckpt_path=x", "trust_checkpoint=1"]))
    flags = typed_view(TrainerFlags, compose_config("train", ["trainer=cpu"]).trainer, "trainer")
    assert flags.accelerator == "cpu" and flags.enable_progress_bar
    with pytest.raises(MDReIDError, match=r"^trainer\.enable_progress_bar='no': expected true or false$"):
        typed_view(
            TrainerFlags, compose_config("train", ["trainer.enable_progress_bar='no'"]).trainer, "trainer"
        )
    assert {f.name for f in dataclasses.fields(RunConfig)} >= {"ckpt_path", "init_from", "trust_checkpoint"}


def test_score_honours_eval_plots_false(tmp_path: Path) -> None:
    n = 12
    feats = np.random.default_rng(0).standard_normal((n, 3, 8)).astype(np.float32)
    flags = np.ones(n, dtype=bool)
    path = tmp_path / "f.npz"
    np.savez(
        path,
        features=feats,
        present=np.ones((n, 3), dtype=bool),
        pid=np.arange(n) % 4,
        camid=np.arange(n) % 3,
        is_query=flags,
        is_gallery=flags,
        format=FORMAT,
        junk="camera",
    )
    common = [f"file={path}", "eval.pairs=paper", "eval.max_rank=10"]
    score(compose_cfg("score.yaml", [*common, "eval.plots=false"], tmp_path / "off"))
    assert (tmp_path / "off" / "metrics.json").is_file() and not (tmp_path / "off" / "plots").exists()
    score(compose_cfg("score.yaml", common, tmp_path / "on"))
    assert (tmp_path / "on" / "plots" / "heatmap_mAP.png").is_file()


@pytest.mark.slow
def test_a_bad_eval_key_is_one_error_line_from_the_cli(tmp_path: Path) -> None:
    """What a user meets: ``error: ...`` naming the key and the allowed ones, exit 2, no traceback."""
    unknown = cli("score", "missing.npz", "+eval.pairz=all", cwd=tmp_path)
    assert (
        error_line(unknown)
        == "error: +eval.pairz: eval.pairz is no key of this config; did you mean eval.pairs?"
    )
    bad_pair = cli("score", "missing.npz", "eval.pairs=['RT->NT','R->X']", cwd=tmp_path)
    assert error_line(bad_pair) == f"error: eval.pairs: bad modality subset 'X': {PAIRS_HELP}"
