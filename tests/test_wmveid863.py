"""WMVEID863 in the official MDReID layout (MSVWild863): the reader, its synthetic copy, the data CLI on it,
and ``experiment=wmveid863`` training and evaluating on the copy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import TINY_OVERRIDES, compose_cfg
from mdreid.data.cli import main as data_cli
from mdreid.data.readers import junk_rule, load_benchmark
from mdreid.data.synthetic.generate import generate
from mdreid.process.errors import MDReIDError
from mdreid.train import train


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate("wmveid863", tmp_path_factory.mktemp("wmveid863"), ids=9, seed=0)


def test_the_reader_reads_the_flat_layout_by_the_official_name_rule(copy: Path) -> None:
    bench = load_benchmark("wmveid863", copy)
    assert junk_rule("wmveid863") == bench.junk_rule == "camera"
    assert {len({r.pid for r in split}) for split in (bench.train, bench.gallery)} == {6, 3}
    first = bench.train[0]
    assert Path(first.paths[0]).relative_to(copy).as_posix() == "MSVWild863/train/vis/0001_cam2_000.jpg"
    assert [Path(p).parent.name for p in first.paths] == ["vis", "ni", "th"]
    assert (first.pid, first.camid, first.label) == (1, 1, 0)  # cam2 in the name is camera 1 here
    names = {Path(r.paths[0]).name for r in bench.gallery}
    assert bench.query and {Path(r.paths[0]).name for r in bench.query} <= names
    # every query has a true match from another camera, so the camera junk rule leaves one to find
    for q in bench.query:
        assert any(g.pid == q.pid and g.camid != q.camid for g in bench.gallery)


def test_bad_names_and_the_per_identity_release_are_one_line(copy: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    shutil.copytree(copy / "MSVWild863", site / "WMVEID863")  # the other accepted top folder
    assert len(load_benchmark("wmveid863", site).train) == len(load_benchmark("wmveid863", copy).train)
    (site / "WMVEID863" / "train" / "ni" / "0001_c2_000.jpg").write_bytes(b"")
    with pytest.raises(
        MDReIDError, match=r"do not follow the name rule PPPP_camC_<rest>\.jpg.*0001_c2_000\.jpg"
    ):
        load_benchmark("wmveid863", site)
    per_id = tmp_path / "per-id" / "WMVEID863"
    for split in ("train", "query", "test"):
        (per_id / split / "0001" / "vis").mkdir(parents=True)
    with pytest.raises(MDReIDError, match=r"one folder per vehicle id \(the per-identity release\)"):
        load_benchmark("wmveid863", per_id.parent)


def test_stats_and_verify_cover_it(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert data_cli(["stats", "--dataset", "wmveid863", "--root", str(copy), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["train"]["ids"], stats["gallery"]["ids"]) == (6, 3) and stats["query"]["images"] > 0
    assert data_cli(["verify", "--dataset", "wmveid863", "--root", str(copy)]) == 0


def test_the_experiment_trains_and_evaluates_on_its_synthetic_copy(tmp_path: Path) -> None:
    tiny = [o for o in TINY_OVERRIDES if not o.startswith(("experiment=", "data.synth.", "data.image_size"))]
    overrides = [
        "experiment=wmveid863",
        *tiny,
        "trainer=cpu",
        "trainer.precision=32-true",
        "model/backbone=tiny",
        "model.backbone.allow_random_init=true",
        "eval.plots=false",
        "data.image_size=[32,64]",
        f"data.root={tmp_path / 'data'}",
        "+data.synth={like: wmveid863, preset: tiny, ids: 9, seed: 0}",
        "data.val=none",  # 6 training identities: every one is trained on
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=2",
        "+trainer.limit_val_batches=0",
        "test=true",
    ]
    metrics = train(compose_cfg("train.yaml", overrides, tmp_path / "run"))
    assert (tmp_path / "data" / "MSVWild863" / "SYNTHETIC.json").is_file()
    assert metrics["test/score"] > 0 and "test/RNT->RNT/mAP" in metrics
