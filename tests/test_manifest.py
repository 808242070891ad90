"""Your own data as a manifest: the round trip native -> manifest gives the same records, labels and 49-pair
metrics on all three layouts; every problem is reported at once with row numbers; samples with only some
modalities train with finite losses and gradients on both tokens."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pytest
import torch

from conftest import TINY_OVERRIDES, compose_cfg, save_weights_checkpoint
from mdreid.data.data_config import DataConfig
from mdreid.data.readers import load_benchmark
from mdreid.data.readers.manifest import load_manifest, write_manifest
from mdreid.data.synthetic.generate import generate
from mdreid.eval import evaluate
from mdreid.factory import build_datamodule, build_module
from mdreid.process.errors import MDReIDError
from mdreid.train import train

LAYOUTS = ("rgbnt201", "rgbnt100", "msvr310")


@pytest.fixture(scope="module")
def copies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny synthetic copy of each benchmark with its manifest written next to it."""
    root = tmp_path_factory.mktemp("manifest-copies")
    out = {}
    for name in LAYOUTS:
        generate(name, root / name, ids=8, seed=0, preset="tiny")
        out[name] = write_manifest(load_benchmark(name, root / name), root / name / "manifest.csv")
    return out


@pytest.mark.parametrize("name", LAYOUTS)
def test_manifest_of_a_benchmark_reads_back_the_same_records(name: str, copies: dict[str, Path]) -> None:
    native = load_benchmark(name, copies[name].parent)
    manifest = load_manifest(copies[name])
    for split in ("train", "query", "gallery"):
        assert getattr(manifest, split) == getattr(native, split), split
    assert manifest.query_is_gallery == native.query_is_gallery
    assert (manifest.num_classes, manifest.num_cameras, manifest.junk_rule) == (
        native.num_classes,
        native.num_cameras,
        native.junk_rule,
    )
    as_jsonl = write_manifest(native, copies[name].with_suffix(".jsonl"))
    assert load_manifest(as_jsonl).train == native.train


def _eval_overrides(data_dir: Path, *extra: str) -> list[str]:
    tiny = [o for o in TINY_OVERRIDES if not o.startswith("callbacks=")]
    # the copies hold 4-5 training identities: too few to hold some out, and evaluation needs none
    return [*tiny, f"paths.data_dir={data_dir}", "eval.plots=false", "data.val=none", *extra]


@pytest.mark.slow
@pytest.mark.parametrize("name", LAYOUTS)
def test_native_and_manifest_give_the_same_49_pair_metrics(
    name: str, copies: dict[str, Path], tmp_path: Path
) -> None:
    root = copies[name].parent
    native_data = [f"data.dataset={name}", f"data.root={root}", "data.synth=null"]
    cfg = compose_cfg("eval.yaml", _eval_overrides(root, *native_data), tmp_path / "n")
    data = build_datamodule(DataConfig.parse(cfg.data))
    torch.manual_seed(0)
    module = build_module(cfg, data)
    ckpt = save_weights_checkpoint(module, tmp_path / "m.ckpt")
    native = evaluate(
        compose_cfg("eval.yaml", [*_eval_overrides(root, *native_data), f"ckpt_path={ckpt}"], tmp_path / "n")
    )
    as_manifest = ["data.dataset=manifest", f"data.manifest={copies[name]}", "data.synth=null"]
    manifest = evaluate(
        compose_cfg("eval.yaml", [*_eval_overrides(root, *as_manifest), f"ckpt_path={ckpt}"], tmp_path / "m")
    )
    assert manifest == native and native["test/RNT->RNT/mAP"] > 0
    rows = json.loads((tmp_path / "m" / "metrics.json").read_text())["rows"]
    assert len(rows) == 49 and rows == json.loads((tmp_path / "n" / "metrics.json").read_text())["rows"]


def _write(path: Path, rows: list[dict[str, str]], extra: tuple[str, ...] = ()) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["split", "pid", "camid", "rgb", "nir", "tir", *extra])
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_every_problem_is_reported_at_once_with_row_numbers(copies: dict[str, Path], tmp_path: Path) -> None:
    good = list(csv.DictReader(copies["rgbnt201"].open()))
    base = copies["rgbnt201"].parent
    rows = [{**r, **{c: str(base / r[c]) for c in ("rgb", "nir", "tir")}} for r in good[:4]]
    rows.append({**rows[0], "split": "validation"})  # row 6
    rows.append({**rows[1], "pid": "seven"})  # row 7
    rows.append(dict(rows[2]))  # row 8: duplicates row 4
    rows.append({**rows[3], "rgb": "", "nir": "", "tir": ""})  # row 9
    rows.append({**rows[3], "split": "query", "nir": str(tmp_path / "gone.jpg")})  # row 10
    rows.append({**rows[3], "split": "gallery"})  # row 11: fine
    path = _write(tmp_path / "bad.csv", rows)
    with pytest.raises(MDReIDError) as info:
        load_manifest(path)
    msg = str(info.value)
    assert "4 bad row(s): row 6: split='validation' is not one of train, val, query, gallery, test" in msg
    assert "row 7: pid='seven' is not an integer" in msg and "row 8: duplicates row 4" in msg
    assert "row 9: no modality: rgb, nir, tir are all empty" in msg
    assert f"1 missing file(s): row 10: {tmp_path / 'gone.jpg'} not found" in msg
    assert "data.on_bad_name=skip" in msg and "data.on_missing=skip" in msg
    skipped = load_manifest(path, on_missing="skip", on_bad_name="skip")
    assert [r.present for r in skipped.query] == [(True, False, True)]  # only the missing modality dropped
    assert len(skipped.train) == 4


def _absolute_rows(manifest: Path) -> list[dict[str, str]]:
    base = manifest.parent
    return [
        {**r, **{c: str(base / r[c]) for c in ("rgb", "nir", "tir")}} for r in csv.DictReader(manifest.open())
    ]


def test_extra_columns_are_ignored_with_one_note(copies: dict[str, Path], tmp_path: Path, caplog) -> None:
    """A user's timestamp and site columns change nothing, are named once, and on_bad_name=skip keeps all rows."""
    rows = _absolute_rows(copies["rgbnt201"])
    plain = load_manifest(_write(tmp_path / "plain.csv", rows))
    stamped = [
        {**r, "timestamp": f"2026-01-01T00:00:{i % 60:02d}", "site": "gate 3"} for i, r in enumerate(rows)
    ]
    path = _write(tmp_path / "extra.csv", stamped, ("timestamp", "site"))
    for policy in ("error", "skip"):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="mdreid.data.readers"):
            bench = load_manifest(path, on_bad_name=policy)
        assert (bench.train, bench.query, bench.gallery) == (plain.train, plain.query, plain.gallery)
        notes = [r.getMessage() for r in caplog.records]
        assert notes == [
            f"{path}: ignoring column(s) timestamp, site; mdreid reads only "
            "split, pid, camid, sceneid, rgb, nir, tir, stitched"
        ]
    jsonl = tmp_path / "extra.jsonl"  # JSON Lines: keys may differ per row, still one note for all
    jsonl.write_text(
        "".join(
            json.dumps({**r, **({"site": "a"} if i % 2 else {"note": 1})}) + "\n" for i, r in enumerate(rows)
        )
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mdreid.data.readers"):
        assert load_manifest(jsonl).train == plain.train
    assert [r.getMessage().split(";")[0] for r in caplog.records] == [
        f"{jsonl}: ignoring column(s) note, site"
    ]


def test_a_known_column_in_other_case_is_an_error_not_ignored(
    copies: dict[str, Path], tmp_path: Path
) -> None:
    rows = [
        {**{k: v for k, v in r.items() if k != "tir"}, "TIR": r["tir"]}
        for r in _absolute_rows(copies["rgbnt201"])
    ]
    path = tmp_path / "upper.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["split", "pid", "camid", "rgb", "nir", "TIR"])
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(MDReIDError, match=r"column\(s\) 'TIR' \(use 'tir'\): column names are lowercase"):
        load_manifest(path)


def test_a_repeated_problem_is_reported_once_with_its_count_and_first_rows(
    copies: dict[str, Path], tmp_path: Path
) -> None:
    rows = _absolute_rows(copies["rgbnt201"])
    train = [r for r in rows if r["split"] == "train"]
    bad = [{**r, "split": "valid"} for r in rows * 4][:118]  # rejected before the duplicate check
    # rows 2.. are the training rows; the 118 "valid" rows follow, then a non-integer pid
    path = _write(tmp_path / "many.csv", [*train, *bad, {**train[0], "pid": "x", "split": "query"}])
    first = len(train) + 2
    with pytest.raises(MDReIDError) as info:
        load_manifest(path)
    msg = str(info.value)
    assert (
        f"119 bad row(s): rows {first}, {first + 1}, {first + 2} (+115 more): split='valid' is not one of "
        f"train, val, query, gallery, test; row {first + 118}: pid='x' is not an integer; fix the manifest"
    ) in msg
    assert msg.count("split='valid'") == 1 and len(msg) < 600


def test_unmatched_query_identities_are_counted(copies: dict[str, Path], tmp_path: Path, caplog) -> None:
    base = copies["rgbnt201"].parent
    good = [
        {**r, **{c: str(base / r[c]) for c in ("rgb", "nir", "tir")}}
        for r in csv.DictReader(copies["rgbnt201"].open())
    ]
    train = [r for r in good if r["split"] == "train"][:8]
    test = [r for r in good if r["split"] == "test"]
    query = [{**r, "split": "query"} for r in test[:3]]
    gallery = [{**r, "split": "gallery"} for r in test if r["pid"] != test[0]["pid"]]
    with caplog.at_level(logging.WARNING, logger="mdreid.data.readers"):
        bench = load_manifest(_write(tmp_path / "m.csv", train + query + gallery))
    unmatched = sum(r["pid"] == test[0]["pid"] for r in query)
    assert f"{unmatched} query row(s) of 1 identities have no gallery image" in caplog.text
    assert not bench.query_is_gallery and len(bench.query) == 3


@pytest.mark.slow
def test_partially_present_samples_train_with_gradients_on_both_tokens(
    copies: dict[str, Path], tmp_path: Path
) -> None:
    """A third of the training rows keep one modality only (R, N or T in turn): losses stay finite, ROL and KDL
    included, and the specific and the (untied) shared token both get gradients."""
    base = copies["rgbnt201"].parent
    rows = []
    for i, r in enumerate(csv.DictReader(copies["rgbnt201"].open())):
        row = {**r, **{c: str(base / r[c]) for c in ("rgb", "nir", "tir")}}
        if row["split"] == "train" and i % 3 == 0:
            keep = ("rgb", "nir", "tir")[(i // 3) % 3]
            row.update({c: "" for c in ("rgb", "nir", "tir") if c != keep})
        rows.append(row)
    path = _write(tmp_path / "partial.csv", rows)
    data = ["data.dataset=manifest", f"data.manifest={path}", "data.synth=null", "model.mdl.tie_tokens=false"]
    data.append("data.val=none")  # every training identity: the batch must hold partial samples
    cfg = compose_cfg("train.yaml", [*TINY_OVERRIDES, f"paths.data_dir={base}", *data], tmp_path / "run")
    datamodule = build_datamodule(DataConfig.parse(cfg.data))
    datamodule.setup("fit")
    module = build_module(cfg, datamodule)
    batch = next(iter(datamodule.train_dataloader()))
    assert not bool(batch["present"].all()) and bool(batch["present"].any(1).all())
    out = module.net({k: batch[k] for k in ("RGB", "NI", "TI")}, batch["present"], batch["camid"])
    losses = module.objective(out, batch["label"])
    assert all(bool(torch.isfinite(v)) for v in losses.values()), losses
    assert float(losses["rol"]) > 0 and float(losses["kdl"]) > 0
    losses["loss"].backward()
    mdl = module.net.mdl
    for param in (mdl.encoder.class_embedding, mdl.shared_token):
        assert param.grad is not None and float(param.grad.abs().sum()) > 0


@pytest.mark.slow
def test_synthetic_manifest_experiment_trains_and_evaluates_from_an_empty_folder(tmp_path: Path) -> None:
    tiny = [o for o in TINY_OVERRIDES if not o.startswith(("experiment=", "data.synth.ids="))]
    overrides = [
        "experiment=synthetic_manifest",
        *tiny,
        "data.synth.ids=12",
        f"paths.data_dir={tmp_path / 'data'}",
    ]
    cfg = compose_cfg(
        "train.yaml", [*overrides, "trainer.max_epochs=1", "eval.plots=false"], tmp_path / "run"
    )
    metrics = train(cfg)
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    manifest = tmp_path / "data" / "synthetic_unpaired" / "unpaired.csv"
    kept = [sum(bool(r[c]) for c in ("rgb", "nir", "tir")) for r in csv.DictReader(manifest.open())]
    assert {1, 2, 3} <= set(kept) and all(k >= 1 for k in kept)
    rows = {
        (r["query"], r["gallery"]): r
        for r in json.loads((tmp_path / "run" / "metrics.json").read_text())["rows"]
    }
    assert len(rows) == 49
    # a pair scores the queries with every modality of Q against the gallery items with every modality of G
    assert rows[("RNT", "RNT")]["num_query"] < rows[("R", "R")]["num_query"]
    assert (
        rows[("R", "RNT")]["num_gallery"]
        == rows[("RNT", "RNT")]["num_gallery"]
        < rows[("R", "R")]["num_gallery"]
    )


def test_data_cli_reads_and_writes_manifests(copies: dict[str, Path], tmp_path: Path, capsys) -> None:
    from mdreid.data.cli import main

    root = copies["msvr310"].parent
    assert (
        main(["to-manifest", "--dataset", "msvr310", "--root", str(root), "--out", str(tmp_path / "m.csv")])
        == 0
    )
    capsys.readouterr()
    assert load_manifest(tmp_path / "m.csv").gallery == load_benchmark("msvr310", root).gallery
    stats = {}
    for dataset, where in (("msvr310", root), ("manifest", tmp_path / "m.csv")):
        assert main(["stats", "--dataset", dataset, "--root", str(where), "--json"]) == 0
        stats[dataset] = {
            k: {c: v for c, v in s.items() if c != "folder"}
            for k, s in json.loads(capsys.readouterr().out).items()
        }
    assert stats["manifest"] == stats["msvr310"] and stats["manifest"]["train"]["scenes"] > 1
    assert main(["verify", "--dataset", "manifest", "--root", str(tmp_path / "m.csv")]) == 0
    assert "look like benchmark images" in capsys.readouterr().out
    assert main(["synth", "--like", "unpaired", "--out", str(tmp_path / "u"), "--ids", "8"]) == 0
    unpaired = load_manifest(tmp_path / "u" / "unpaired.csv")
    assert {sum(r.present) for r in unpaired.train} == {1, 2, 3}
