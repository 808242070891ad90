"""Scoring saved features: eval's own features score to eval's metrics.json on all three benchmark layouts, a
hand-made file of another "method" (random projections of pixels) scores all 49 pairs with the numbers of a
plain per-query loop, and every malformed file is one error naming the file and the key."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from conftest import TINY_OVERRIDES, compose_cfg, save_weights_checkpoint
from mdreid.data.data_config import DataConfig
from mdreid.data.readers import load_benchmark
from mdreid.data.synthetic.generate import generate
from mdreid.eval import evaluate
from mdreid.factory import build_datamodule, build_module
from mdreid.feature_file import FORMAT, read_feature_file
from mdreid.metrics import PairSelection
from mdreid.metrics.eval_config import EvalConfig, metric_keys
from mdreid.modalities import NUM_MODALITIES, all_pairs, subset_indices
from mdreid.process.errors import MDReIDError
from mdreid.score import file_argument, score
from test_config_keys import one_error

RESULT_KEYS = ("similarity", "junk", "rows", "groups", "cmc")


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize(
    ("dataset", "extra"),
    [("rgbnt201", ()), ("rgbnt100", ("eval.similarity=paper",)), ("msvr310", ())],
)
def test_saved_features_score_to_eval_metrics(
    dataset: str, extra: tuple[str, ...], synthetic_data_dir: Path, tmp_path: Path
) -> None:
    tiny = [o for o in TINY_OVERRIDES if not o.startswith("callbacks=")]
    common = [*tiny, f"paths.data_dir={synthetic_data_dir}", f"data.dataset={dataset}"]
    common += [f"data.synth.like={dataset}", "eval.plots=false", *extra]
    cfg = compose_cfg("eval.yaml", common, tmp_path / "eval")
    torch.manual_seed(0)
    module = build_module(cfg, build_datamodule(DataConfig.parse(cfg.data)))
    ckpt = save_weights_checkpoint(module, tmp_path / "m.ckpt")
    evaluate(
        compose_cfg("eval.yaml", [*common, f"ckpt_path={ckpt}", "eval.save_features=true"], tmp_path / "eval")
    )
    saved = tmp_path / "eval" / "features.safetensors"
    assert (tmp_path / "eval" / "metrics.json").is_file() and not (tmp_path / "eval" / "plots").exists()
    same_eval = ["eval.max_rank=10", "eval.plots=false", *extra]  # the eval section eval ran with
    scored = score(compose_cfg("score.yaml", [f"file={saved}", *same_eval], tmp_path / "score"))
    evaluated, rescored = _metrics(tmp_path / "eval"), _metrics(tmp_path / "score")
    assert evaluated["junk"] == ("scene" if dataset == "msvr310" else "camera")
    assert len(evaluated["rows"]) == 49 and evaluated["rows"][0]["num_valid"] > 0
    for key in RESULT_KEYS:
        assert rescored[key] == evaluated[key], key  # exactly, not approximately
    assert rescored["dataset"] == dataset and rescored["source"]["ckpt_path"] == str(ckpt)
    assert scored["test/RNT->RNT/mAP"] == evaluated["groups"]["matched/RNT->RNT/mAP"]


def _pixels(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L").resize((8, 16)), dtype=np.float32).ravel() / 255.0


def _reference_map(
    feats: np.ndarray, present: np.ndarray, pid: np.ndarray, camid: np.ndarray, q: str, g: str
) -> float:
    """mAP (%) of one pair by a plain per-query loop: the common modalities' features concatenated (all cross
    pairs when none is common), cosine, same pid and camera removed, queries without a match skipped."""
    q_mods, g_mods = subset_indices(q), subset_indices(g)
    common = [m for m in q_mods if m in g_mods]
    pairs = [(m, m) for m in common] or [(i, j) for i in q_mods for j in g_mods]
    aps = []
    for a in np.flatnonzero(present[:, list(q_mods)].all(1)):
        qv = np.concatenate([feats[a, i] for i, _ in pairs])
        scores = []
        for b in np.flatnonzero(present[:, list(g_mods)].all(1)):
            if pid[b] == pid[a] and camid[b] == camid[a]:
                continue
            gv = np.concatenate([feats[b, j] for _, j in pairs])
            cos = qv @ gv / (np.linalg.norm(qv) * np.linalg.norm(gv))
            scores.append((-cos, pid[b] == pid[a]))
        hits = np.array([m for _, m in sorted(scores, key=lambda s: (s[0], s[1]))])
        if hits.any():
            ranks = np.flatnonzero(hits) + 1
            aps.append(np.mean(np.arange(1, len(ranks) + 1) / ranks))
    return 100.0 * float(np.mean(aps))


def test_random_projection_features_of_another_method_score_all_49_pairs(tmp_path: Path) -> None:
    generate("rgbnt201", tmp_path / "data", ids=8, seed=0, preset="tiny")
    records = load_benchmark(
        "rgbnt201", tmp_path / "data"
    ).query  # RGBNT201: query and gallery are one folder
    rng = np.random.default_rng(0)
    projection = rng.standard_normal((NUM_MODALITIES, 8 * 16, 24)).astype(np.float32)
    feats = np.stack([[_pixels(r.paths[m]) @ projection[m] for m in range(NUM_MODALITIES)] for r in records])
    present = np.ones((len(records), NUM_MODALITIES), dtype=bool)
    present[::4, 2] = False  # some images have no thermal view
    feats[~present] = 0.0
    pid = np.array([r.pid for r in records])
    camid = np.array([r.camid for r in records])
    path = tmp_path / "projections.npz"
    flags = np.ones(len(records), dtype=bool)
    np.savez(
        path,
        features=feats,
        present=present,
        pid=pid,
        camid=camid,
        is_query=flags,
        is_gallery=flags,
        format=FORMAT,
        junk="camera",
        method="random projections of pixels",
    )
    result = score(compose_cfg("score.yaml", [f"file={path}", "eval.similarity=common"], tmp_path / "run"))
    rows = _metrics(tmp_path / "run")["rows"]
    assert [(r["query"], r["gallery"]) for r in rows] == all_pairs()
    assert all(r["num_valid"] > 0 and 0.0 < r["mAP"] <= 100.0 for r in rows)
    assert (tmp_path / "run" / "plots" / "heatmap_mAP.png").is_file()
    for q, g in (("R", "N"), ("RT", "NT"), ("RNT", "T"), ("T", "RN"), ("RN", "RN")):
        assert result[f"test/{q}->{g}/mAP"] == pytest.approx(
            _reference_map(feats, present, pid, camid, q, g), abs=1e-3
        )
    # the same features as a safetensors file score the same
    tensors = {
        "features": torch.from_numpy(feats),
        "present": torch.from_numpy(present),
        "pid": torch.from_numpy(pid),
        "camid": torch.from_numpy(camid),
        "is_query": torch.from_numpy(flags),
        "is_gallery": torch.from_numpy(flags.copy()),
    }
    save_file(tensors, tmp_path / "projections.safetensors", metadata={"format": FORMAT, "junk": "camera"})
    again = score(
        compose_cfg(
            "score.yaml",
            [
                f"file={tmp_path / 'projections.safetensors'}",
                "eval.similarity=common",
                "eval.plots=false",
                "eval.pairs=paper",
            ],
            tmp_path / "run2",
        )
    )
    assert len(_metrics(tmp_path / "run2")["rows"]) == 11
    assert again == {k: v for k, v in result.items() if k in again} and len(again) < len(result)


def _good(n: int = 6) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "features": torch.randn(n, 3, 4, generator=g),
        "present": torch.ones(n, 3, dtype=torch.bool),
        "pid": torch.arange(n) // 2,
        "camid": torch.arange(n) % 2,
        "is_query": torch.ones(n, dtype=torch.bool),
        "is_gallery": torch.ones(n, dtype=torch.bool),
    }


def _nan_row() -> dict[str, torch.Tensor]:
    bad = _good()
    bad["features"][3, 1, 0] = float("nan")
    return bad


META = {"format": FORMAT, "junk": "camera"}
BAD_FILES = [
    ({k: v for k, v in _good().items() if k != "pid"}, META, "key 'pid': missing tensor"),
    ({**_good(), "extra": torch.zeros(6)}, META, "key 'extra': unknown tensor"),
    (_good(), {"junk": "camera"}, "key 'format': missing text value"),
    (_good(), {**META, "format": "pt"}, "key 'format': is 'pt'"),
    (_good(), {**META, "junk": "view"}, "key 'junk': is 'view'"),
    (_good(), {**META, "dataset": "msvr310"}, "key 'junk': is 'camera' but msvr310 uses the 'scene' rule"),
    (_good(), {**META, "junk": "scene"}, "key 'sceneid': missing tensor"),
    (_good(), {**META, "provenance": "[1]"}, "key 'provenance': must be a JSON object"),
    ({**_good(), "features": torch.randn(6, 2, 4)}, META, "key 'features': must have shape [N, 3, D]"),
    (
        {**_good(), "features": torch.ones(6, 3, 4, dtype=torch.int32)},
        META,
        "key 'features': must be floating point",
    ),
    (_nan_row(), META, "key 'features': 1 non-finite feature(s) (NaN/inf), first at row 3, modality 1"),
    ({**_good(), "shared": torch.randn(5, 3, 4)}, META, "key 'shared': has 5 rows, 'features' has 6"),
    ({**_good(), "present": torch.full((6, 3), 2, dtype=torch.uint8)}, META, "key 'present': must be bool"),
    (
        {**_good(), "present": torch.zeros(6, 3, dtype=torch.bool)},
        META,
        "key 'present': row 0 has no modality",
    ),
    ({**_good(), "pid": torch.zeros(6)}, META, "key 'pid': must be an integer id per row"),
    ({**_good(), "box": torch.zeros(6, 3)}, META, "key 'box': must be float [6, 4]"),
    ({**_good(), "frame": torch.zeros(6)}, META, "key 'frame': must be an integer id per row"),
    (_good(), {**META, "names": '["a"]'}, "key 'names': must be a JSON list of 6 strings"),
    ({**_good(), "camid": torch.zeros(5, dtype=torch.long)}, META, "key 'camid': must have shape [6]"),
    ({**_good(), "is_query": torch.zeros(6, dtype=torch.bool)}, META, "key 'is_query': no row has it set"),
    (
        {**_good(), "is_query": torch.zeros(6, dtype=torch.bool), "is_gallery": torch.arange(6) > 0},
        META,
        "key 'is_query': row 0 is neither query nor gallery",
    ),
]


@pytest.mark.parametrize(("tensors", "meta", "message"), BAD_FILES)
def test_a_bad_feature_file_is_one_error_naming_file_and_key(
    tensors, meta, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "bad.safetensors"
    save_file(tensors, path, metadata=meta)
    with pytest.raises(MDReIDError) as info:
        read_feature_file(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)


def test_unreadable_files_and_pickles_are_refused(tmp_path: Path) -> None:
    cases = {
        tmp_path / "gone.npz": "no such file",
        tmp_path / "f.pt": "unknown file type '.pt'",
        tmp_path / "cut.safetensors": "not a readable safetensors file",
        tmp_path / "cut.npz": "not a readable npz file",
        tmp_path / "objects.npz": "key 'pid': holds Python objects, refused (allow_pickle=False)",
    }
    (tmp_path / "f.pt").write_bytes(b"x")
    (tmp_path / "cut.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    (tmp_path / "cut.npz").write_bytes(b"PK\x03\x04 truncated")
    np.savez(tmp_path / "objects.npz", pid=np.array([{"a": 1}], dtype=object), format=FORMAT, junk="camera")
    for path, message in cases.items():
        with pytest.raises(MDReIDError, match=None) as info:
            read_feature_file(path)
        assert str(info.value).startswith(str(path)) and message in str(info.value), str(info.value)


def test_every_metric_argument_is_an_eval_option(tmp_path: Path) -> None:
    """An ``eval`` key reaches the metric exactly when it is an ``AnyToAnyReID`` argument, in score as in eval."""
    fields = {f.name for f in dataclasses.fields(EvalConfig)}
    assert set(metric_keys()) <= fields and "junk" not in fields  # junk comes from the data
    options = EvalConfig.parse({"pairs": "paper", "chunk_size": 3, "save_features": True}).metric_options()
    assert set(options) == set(metric_keys()) and options["chunk_size"] == 3  # save_features is no metric's
    assert options["pairs"] == PairSelection.parse("paper")
    path = tmp_path / "f.safetensors"
    save_file(_good(), path, metadata=META)
    with pytest.raises(MDReIDError, match="no feature file given: python -m mdreid.score FILE"):
        score(compose_cfg("score.yaml", [], tmp_path / "run"))
    with pytest.raises(MDReIDError, match="eval.save_features=true: score reads saved features"):
        score(compose_cfg("score.yaml", [f"file={path}", "eval.save_features=true"], tmp_path / "run"))
    with pytest.raises(MDReIDError, match="eval.max_rank: must be >= 10"):
        score(compose_cfg("score.yaml", [f"file={path}", "eval.max_rank=5"], tmp_path / "run"))


def test_the_file_argument_becomes_a_quoted_override(tmp_path: Path) -> None:
    assert file_argument(["/a b/it's,[1].npz", "eval.pairs=paper"]) == [
        "file='/a b/it\\'s,[1].npz'",
        "eval.pairs=paper",
    ]
    assert file_argument(["file=x.npz"]) == ["file=x.npz"]
    assert file_argument(["--help"]) == ["--help"]
    odd = tmp_path / "k=v.npz"
    odd.write_bytes(b"")
    assert file_argument([str(odd)]) == [f"file='{odd}'"]


def test_cli_reports_a_bad_file_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad features.safetensors"
    save_file({k: v for k, v in _good().items() if k != "camid"}, bad, metadata=META)
    proc = subprocess.run(
        [sys.executable, "-m", "mdreid.score", str(bad), f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {bad}: key 'camid': missing tensor; required: features, present, pid, camid, is_query, "
        "is_gallery (format: docs/feature_files.md)"
    )


@pytest.mark.parametrize(
    ("name", "content", "holds"),
    [
        ("x.npz", "png", "is not an npz file (a zip archive of arrays, numpy.savez): it holds a PNG image"),
        (
            "x.npz",
            b"pid,camid\n1,2\n",
            "is not an npz file (a zip archive of arrays, numpy.savez): it holds text",
        ),
        ("x.safetensors", "png", "is not a safetensors file: it holds a PNG image"),
    ],
)
def test_a_file_of_another_kind_is_one_line_naming_it(
    name: str, content, holds: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """``python -m mdreid.score x.npz`` where x.npz is an image or text: numpy would try to unpickle it."""
    path = tmp_path / name
    if content == "png":
        Image.new("RGB", (4, 4)).save(path, format="PNG")
    else:
        path.write_bytes(content)
    line = one_error("score", [str(path), f"hydra.run.dir={tmp_path / 'run'}"], monkeypatch, capsys)
    assert line == f"error: {path}: {holds} (format: docs/feature_files.md)"


def test_features_without_a_modality_name_the_file_and_every_pair_they_cannot_give(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """No TIR anywhere: one line naming the file, the missing combinations and every impossible pair, and the
    ``eval.pairs`` value that scores the rest; scored that way, the score line says what it averaged."""
    tensors = _good(8)
    tensors["present"][:, 2] = False
    tensors["features"][:, 2] = 0.0
    path = tmp_path / "no tir.safetensors"
    save_file(tensors, path, metadata=META)
    line = one_error("score", [str(path), f"hydra.run.dir={tmp_path / 'run'}"], monkeypatch, capsys)
    assert line == (
        f"error: {path}: 40 of 49 pairs cannot be scored (no query has all of T / RT / NT / RNT; no gallery item "
        "has all of T / RT / NT / RNT): R->T, R->RT, R->NT, R->RNT, N->T, N->RT (+34 more); check the presence "
        "mask, or drop them from eval.pairs: eval.pairs=\"['R->R','R->N','R->RN','N->R','N->N','N->RN','RN->R',"
        "'RN->N','RN->RN']\" scores the others"
    )
    pairs = "eval.pairs=['R->R','R->N','R->RN','N->R','N->N','N->RN','RN->R','RN->N','RN->RN']"
    result = score(compose_cfg("score.yaml", [f"file={path}", pairs, "eval.plots=false"], tmp_path / "ok"))
    assert len([k for k in result if k.count("/") == 2 and k.endswith("/mAP")]) == 9
    printed = " ".join(capsys.readouterr().out.split())  # Rich wraps long lines at the terminal width
    expected = f"score = (mAP + R1) / 2 averaged over the 9 scored pairs (RNT->RNT not scored): {result['test/score']:.2f}"
    assert expected in printed
    full = tmp_path / "full.safetensors"
    save_file(_good(8), full, metadata=META)
    score(
        compose_cfg(
            "score.yaml", [f"file={full}", "eval.pairs=paper", "eval.plots=false"], tmp_path / "paper"
        )
    )
    assert "score = (mAP + R1) / 2 of RNT->RNT: " in " ".join(capsys.readouterr().out.split())
