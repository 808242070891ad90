"""docs/extending.md followed as a user would: the plug-in package of its code blocks (a reader, a loss term, a
tower) is written out verbatim and installed with pip (into a folder on the path, where the doc's ``pip install
-e`` would change the test environment itself), then the doc's own commands run through its entry points, on
the tiny experiment and the test's data folder; then each way a plug-in goes wrong, the way a user meets it."""

from __future__ import annotations

import csv
import importlib
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from conftest import TINY_OVERRIDES, compose_cfg
from mdreid.data.cli import main as data_cli
from mdreid.data.data_config import DataConfig
from mdreid.data.readers import READERS, junk_rule, load_benchmark, register_reader, sources
from mdreid.data.readers.manifest import load_manifest
from mdreid.data.records import Benchmark
from mdreid.data.synthetic.generate import generate
from mdreid.eval import evaluate
from mdreid.factory import build_datamodule, load_module
from mdreid.losses.extra_terms import LOSS_TERMS, check_loss_terms
from mdreid.losses.loss_config import LossConfig
from mdreid.models.tower import Tower, build_tower, check_tower_section
from mdreid.models.tower_registry import register_tower
from mdreid.optim.param_groups import OptimConfig, build_param_groups
from mdreid.process.errors import MDReIDError, user_error
from mdreid.train import train

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
# a fenced block whose first line names the file it is: the package's files, verbatim
FILE_BLOCK = re.compile(r"```(?:python|toml)\n# (\S+)\n.*?```", re.DOTALL)
PACKAGE_FILES = {
    "pyproject.toml",
    "my_package/__init__.py",
    "my_package/readers.py",
    "my_package/losses.py",
    "my_package/towers.py",
}
ONE_STEP = ["trainer.max_epochs=1", "+trainer.limit_train_batches=1", "+trainer.limit_val_batches=0"]
TERM = "model.loss.extra_terms.norm"
BASH_BLOCK = re.compile(r"```bash\n(.*?)```", re.DOTALL)


def doc_args(module: str, marker: str) -> list[str]:
    """The arguments of the doc's first ``python -m <module>`` command that contains ``marker``, as the shell
    splits them (continuation lines joined)."""
    for block in BASH_BLOCK.findall(DOC.read_text()):
        for command in block.replace("\\\n", " ").splitlines():
            words = shlex.split(command, comments=True)
            if words[:3] == ["python", "-m", module] and marker in command:
                return words[3:]
    raise AssertionError(f"docs/extending.md has no `python -m {module}` command with {marker}")


# the doc's commands, less the experiment they start from (the tests run the tiny one)
NORM = [a for a in doc_args("mdreid.train", "extra_terms") if not a.startswith("experiment=")]
TOWER = [a for a in doc_args("mdreid.train", "tower: toy") if not a.startswith("experiment=")]
# the tiny run without its tower section and callbacks (the tower and callbacks are the test's)
TINY = [o for o in TINY_OVERRIDES if not o.startswith(("callbacks=", "model.backbone."))]


def write_package(folder: Path) -> Path:
    """The package of docs/extending.md's file blocks under ``folder``."""
    blocks = {m[1]: m[0].split("\n", 1)[1].removesuffix("```") for m in FILE_BLOCK.finditer(DOC.read_text())}
    assert set(blocks) == PACKAGE_FILES
    for name, text in blocks.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The doc's package installed with pip (entry points and all) into a folder put on ``sys.path``."""
    tmp = tmp_path_factory.mktemp("plugin-package")
    package, target = write_package(tmp / "my-package"), tmp / "site"
    pip = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
    ]
    subprocess.run([*pip, "--target", str(target), str(package)], check=True, timeout=300)
    assert (target / "my_package" / "readers.py").is_file()
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    yield target
    sys.path.remove(str(target))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("toy-site")
    generate("rgbnt201", root, ids=12, seed=0, preset="tiny")
    return root


def on_site(site: Path) -> list[str]:
    """A run on the doc's reader, as the synth error advises: the data at data.root, no synthetic copy."""
    return ["data.dataset=two_cameras", f"data.root={site}", "data.synth=null", "data.val=none"]


def user_message(call: Callable[[], object]) -> str:
    """The one error line a command prints when ``call`` fails (Hydra wraps what a constructor raises)."""
    with pytest.raises(Exception) as err:
        call()
    found = user_error(err.value)
    assert found is not None, err.value
    return str(found)


def start(module: str, args: list[str], site_packages: Path, cwd: Path) -> subprocess.Popen[str]:
    """``python -m <module> ARGS`` with the installed package on PYTHONPATH, as a user's environment has it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "HYDRA_", "MDREID_"))}
    inherited = [os.path.abspath(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([str(site_packages), *inherited])
    command = [sys.executable, "-m", module, *args]
    return subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def output(proc: subprocess.Popen[str]) -> str:
    """What a started command printed, once it succeeded."""
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return out


def test_the_installed_package_trains_from_the_command_line_and_its_checkpoint_evaluates(
    installed: Path, site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The user's path through the entry points: ``python -m mdreid.train`` one step with the doc's reader, loss
    term and tower (its term in the progress line and the logger), ``python -m mdreid.data stats`` beside it;
    then the checkpoint evaluates with the loss term's plug-in gone."""
    # the doc's commands on the reader's data, with data.root / --root pointing at it
    here = {"data.root=data": f"data.root={site}", "data": str(site)}
    stats_args = [here.get(a, a) for a in doc_args("mdreid.data", "--dataset two_cameras")]
    stats = start("mdreid.data", [*stats_args, "--json"], installed, tmp_path)  # beside the training run
    reader_run = [here.get(a, a) for a in doc_args("mdreid.train", "data.dataset=two_cameras")]
    reader_run = [a for a in reader_run if not a.startswith("experiment=")] + ["data.val=none"]
    run = tmp_path / "run"
    callbacks = [
        "callbacks=default",
        "~callbacks.model_checkpoint",  # last.ckpt only
        "~callbacks.model_summary",
        "callbacks.progress_bar.style=plain",
        "callbacks.progress_bar.every_n_steps=1",
        "trainer.enable_progress_bar=true",
    ]
    args = [*TINY, *callbacks, *ONE_STEP, "test=false", *reader_run, *TOWER, *NORM]
    trained = output(
        start("mdreid.train", [*args, "logger=csv", f"hydra.run.dir={run}"], installed, tmp_path)
    )
    counts = json.loads(output(stats))
    assert counts["train"]["cameras"] == 3 and counts["train"]["folder"] == "(reader two_cameras)"
    line = next(x for x in trained.splitlines() if x.startswith("epoch 1/1 | step 1/"))
    assert re.search(r" \| loss [-\d.e]+ \| norm [-\d.e]+ \| ", line), line
    with open(run / "csv" / "metrics.csv", newline="") as f:
        logged = [row for row in csv.DictReader(f) if row.get("train/norm_epoch")]
    assert logged and float(logged[0]["train/norm_epoch"]) > 0
    parts = sum(float(logged[0][f"train/{k}_epoch"]) for k in ("id", "triplet", "rol", "kdl", "norm"))
    assert float(logged[0]["train/loss_epoch"]) == pytest.approx(parts, rel=1e-5)

    # the loss term's package is gone: evaluating the checkpoint does not notice (the tower comes back)
    monkeypatch.setattr(LOSS_TERMS, "_plugins", {})
    monkeypatch.setattr(LOSS_TERMS, "_import_new", lambda: None)
    ckpt = run / "checkpoints" / "last.ckpt"
    scores = evaluate(compose_cfg("eval.yaml", [*TINY, *reader_run, f"ckpt_path={ckpt}"], tmp_path / "ev"))
    assert scores["test/score"] > 0
    model = load_module(ckpt)
    assert type(model.net.mdl.encoder).__qualname__ == "ToyTower" and isinstance(model.net.mdl.encoder, Tower)
    with pytest.raises(MDReIDError, match=r"no loss term has that name"):  # while training would need it
        check_loss_terms(model.objective.config)


def test_an_unregistered_reader_says_how_to_register_and_install_it(installed: Path, tmp_path: Path) -> None:
    cfg = compose_cfg("train.yaml", [*TINY_OVERRIDES, "data.dataset=my_site", "data.synth=null"], tmp_path)
    message = user_message(lambda: train(cfg))
    assert message.startswith("data.dataset='my_site': no dataset reader has that name (known: rgbnt201")
    assert "two_cameras" in message  # the installed package's reader is listed
    for advice in (
        "@register_reader('my_site')",
        '[project.entry-points."mdreid.readers"]',
        "pip install -e",
    ):
        assert advice in message
    assert "two_cameras" in sources() and junk_rule("two_cameras") == "camera"


def test_the_synth_error_on_a_reader_of_ones_own_gives_the_fix_that_works(
    installed: Path, site: Path, tmp_path: Path
) -> None:
    cfg = compose_cfg("train.yaml", [*TINY_OVERRIDES, "data.dataset=two_cameras"], tmp_path / "a")
    assert user_message(lambda: DataConfig.parse(cfg.data)).endswith(
        "set data.synth=null, with that reader's data at data.root"
    )
    # following it: the data at data.root, no synthetic copy
    fixed = compose_cfg("train.yaml", [*TINY_OVERRIDES, *on_site(site)], tmp_path / "b")
    assert build_datamodule(DataConfig.parse(fixed.data)).num_cameras == 2


def test_reader_args_reach_the_reader_and_are_checked_against_it(
    installed: Path, site: Path, tmp_path: Path
) -> None:
    cfg = compose_cfg(
        "train.yaml", [*TINY_OVERRIDES, *on_site(site), "data.reader_args={cameras: 1}"], tmp_path
    )
    bench = build_datamodule(DataConfig.parse(cfg.data)).benchmark
    assert {r.camid for r in (*bench.train, *bench.gallery)} == {0}
    bad = compose_cfg(
        "train.yaml", [*TINY_OVERRIDES, *on_site(site), "data.reader_args={camera: 1}"], tmp_path
    )
    assert re.match(
        r"data\.reader_args: the dataset reader 'two_cameras' \(.*\) cannot be called .*'camera'",
        user_message(lambda: DataConfig.parse(bad.data)),
    )
    builtin = compose_cfg("train.yaml", [*TINY_OVERRIDES, "data.reader_args={cameras: 1}"], tmp_path)
    assert "the built-in reader rgbnt201 takes none" in user_message(lambda: DataConfig.parse(builtin.data))


def _reader_returning(name: str, fault: str):  # noqa: ANN202 - a registered test reader
    """A reader that reads the site as RGBNT201 and then breaks one rule."""

    def read(root: Path, on_missing: str, on_bad_name: str) -> Benchmark:
        bench = replace(load_benchmark("rgbnt201", root), name=name)
        first = bench.gallery[0]
        if fault == "label":  # kept cameras 0 and 1 but forgot to relabel
            return replace(bench, train=[r for r in bench.train if r.pid != bench.train[0].pid])
        if fault == "camid":
            return replace(bench, gallery=[replace(first, camid=-1), *bench.gallery[1:]])
        if fault == "paths":
            return replace(bench, gallery=[replace(first, paths=first.paths[:2]), *bench.gallery[1:]])
        if fault == "empty":
            return replace(bench, query=[])
        if fault == "junk":
            return replace(bench, junk_rule="scene")
        return replace(bench, name="rgbnt201")

    return register_reader(name)(read)


@pytest.mark.parametrize(
    ("fault", "rule"),
    [
        (
            "label",
            r"training label 1 for identity \d+ .*expected 0: labels are 0\.\.\d+ in the order of the sorted",
        ),
        ("camid", r"camid=-1 for .*camera ids are integers from 0"),
        ("paths", r"paths=\(.*\): give the R, N and T files"),
        ("empty", r"no query records; every role needs at least one"),
        ("junk", r"junk_rule='scene' but it is registered with 'camera'"),
        ("name", r"Benchmark\(name='rgbnt201'\); name it 'broken_name'"),
    ],
)
def test_a_reader_that_breaks_a_rule_stops_in_one_line_naming_it(
    fault: str, rule: str, site: Path, tmp_path: Path
) -> None:
    name = f"broken_{fault}"
    if name not in READERS:
        _reader_returning(name, fault)
    if fault == "label":  # as a user meets it: training, not an index error inside cross_entropy
        cfg = compose_cfg("train.yaml", [*TINY_OVERRIDES, *ONE_STEP, *on_site(site)], tmp_path)
        cfg.data.dataset = name
        with pytest.raises(MDReIDError, match=rf"^the dataset reader '{name}' \(.*\) returned {rule}"):
            train(cfg)
        return
    with pytest.raises(
        MDReIDError, match=rf"^the dataset reader '{name}' \(.*\) returned {rule}.*fix the reader"
    ):
        load_benchmark(name, site)


def test_stats_verify_and_to_manifest_read_through_a_reader_of_ones_own(
    installed: Path, site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--dataset", "two_cameras", "--root", str(site), "--reader-args", '{"cameras": 1}']
    assert data_cli(["stats", *args, "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["train"]["cameras"] == stats["query"]["cameras"] == 1
    assert data_cli(["verify", *args]) == 0
    assert "files decode" in capsys.readouterr().out
    out = tmp_path / "site.csv"
    assert data_cli(["to-manifest", *args, "--out", str(out)]) == 0
    manifest = load_manifest(out)
    assert (
        len(manifest.train) == stats["train"]["images"]
        and len(manifest.gallery) == stats["gallery"]["images"]
    )
    with pytest.raises(SystemExit) as exit_code:
        data_cli(["stats", "--dataset", "my_site", "--root", str(site)])
    assert exit_code.value.code == 2
    assert capsys.readouterr().err.startswith("error: --dataset='my_site': no dataset reader has that name")


def test_a_misspelt_loss_term_or_keyword_is_one_line_before_the_data(
    installed: Path, site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_data(*args: object, **kwargs: object) -> None:
        raise AssertionError("the DataModule was built before the loss terms were checked")

    monkeypatch.setattr("mdreid.factory.build_datamodule", no_data)
    misspelt = [f"+{TERM}.term=feature_nrom", f"+{TERM}.weight=0.1"]
    cfg = compose_cfg("train.yaml", [*TINY_OVERRIDES, *on_site(site), *misspelt], tmp_path)
    with pytest.raises(
        MDReIDError, match=rf"^{TERM}\.term='feature_nrom': no loss term .*feature_norm.*pip install"
    ):
        train(cfg)
    keyword = [f"+{TERM}.term=feature_norm", f"+{TERM}.targt=0.5"]
    cfg = compose_cfg("train.yaml", [*TINY_OVERRIDES, *on_site(site), *keyword], tmp_path)
    with pytest.raises(MDReIDError, match=rf"^{TERM}: the loss term 'feature_norm' .*'targt'"):
        train(cfg)
    with pytest.raises(MDReIDError, match=rf"^{TERM}: give {{term: <a registered loss term>"):
        check_loss_terms(
            LossConfig(extra_terms={"norm": {"_target_": "my_package.losses.FeatureNormPenalty"}})
        )
    with pytest.raises(MDReIDError, match=rf"^{TERM}\.weight='0\.1': expected a number$"):
        check_loss_terms(LossConfig(extra_terms={"norm": {"term": "feature_norm", "weight": "0.1"}}))


def test_a_package_whose_module_fails_to_import_is_one_line(tmp_path: Path) -> None:
    """An installed package's entry point that names a module that is gone (importlib.metadata reads it)."""
    info = tmp_path / "broken_plugins-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugins\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[mdreid.losses]\nbroken = broken_plugins.gone\n")
    sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    try:
        with pytest.raises(
            MDReIDError,
            match=r"^the mdreid\.losses entry point broken = broken_plugins\.gone of broken-plugins cannot be "
            r"imported \(ModuleNotFoundError: .*\); fix that module, or reinstall its package",
        ):
            check_loss_terms(LossConfig(extra_terms={"x": {"term": "not_registered_yet"}}))
    finally:
        sys.path.remove(str(tmp_path))


def test_the_registered_tower_gets_the_official_learning_rates(installed: Path) -> None:
    from my_package.towers import ToyTower

    section = {"tower": "toy", "width": 32, "patch_size": 16, "weights": None}
    tower = build_tower(section, (64, 32))
    assert isinstance(tower, ToyTower) and isinstance(tower, Tower) and tower.out_dim == 16
    tower.use_prefix_tokens(2)
    assert tower.positional_embedding.shape == (2 + 4 * 2, 32)  # the class row twice, 4x2 patches
    named = [(f"mdl.encoder.{n}", p) for n, p in tower.named_parameters()]
    groups = {n: g["name"] for g in build_param_groups(named, OptimConfig()) for n in g["param_names"]}
    assert groups["mdl.encoder.block.linear1.weight"] == groups["mdl.encoder.block.linear1.bias"] == "encoder"
    assert groups["mdl.encoder.positional_embedding"] == "token_pos"


def test_a_tower_name_key_or_class_that_is_wrong_is_one_line(installed: Path) -> None:
    with pytest.raises(
        MDReIDError, match=r"^model\.backbone\.tower='toi': no tower .*known: timm, toy.*pip install"
    ):
        check_tower_section({"tower": "toi"})
    with pytest.raises(
        MDReIDError, match=r"^model\.backbone: the tower 'toy' \(my_package\.towers\.ToyTower.*'widht'"
    ):
        check_tower_section({"tower": "toy", "widht": 32})
    with pytest.raises(MDReIDError, match=r"register_tower\('NAME'\).*model\.backbone\.tower=NAME"):
        check_tower_section({"_target_": "my_package.towers.ToyTower"})
    check_tower_section({"tower": "toy", "allow_random_init": True, "weights": None})
    # a checkpoint written when the timm tower was named by its class path
    check_tower_section({"_target_": "mdreid.models.timm_tower.TimmTower", "name": "vit_base_patch14_dinov2"})
    register_tower("identity")(torch.nn.Identity)
    with pytest.raises(
        MDReIDError, match=r"missing: class_token, use_prefix_tokens, embed_patches, encode, project, out_dim"
    ):
        build_tower({"tower": "identity"}, (64, 32))
