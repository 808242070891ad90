"""Bad inputs through the real CLIs (``python -m mdreid.train|eval|data``), as a user meets them: each ends in
exactly one ``error: ...`` line naming the file or config key and the fix, exit code 2 and no traceback (unless
``HYDRA_FULL_ERROR=1`` / ``--verbose``). Tests are numbered 01 to 12, one number per kind of bad input.

Reader-level details are in test_readers.py / test_data_cli.py, the metric's in test_rank_metrics.py, the CLIP
loader's in test_backbone.py; here the point is what reaches the terminal. Every train/eval start costs ~10 s of
torch + Lightning import, so the module fixture breaks one tiny synthetic dataset in several copies and starts
every case at once, two at a time; each test then checks its own case.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from conftest import TINY_OVERRIDES
from mdreid.data.data_config import DataConfig
from mdreid.data.synthetic.generate import generate
from mdreid.factory import build_datamodule, build_module
from mdreid.process.errors import MDReIDError

pytestmark = pytest.mark.slow

Proc = subprocess.CompletedProcess[str]
TRAIN = [
    *TINY_OVERRIDES,
    "trainer.max_epochs=1",
    "eval.plots=false",
    "runtime.torch_threads=1",
]  # two runs share 2 cores
EVAL = [o for o in TRAIN if not o.startswith("callbacks=")]  # eval.yaml has no callbacks group
CHECKPOINTING = ["callbacks=default", "~callbacks.progress_bar", "~callbacks.model_summary"]
EXPERIMENTS = ("msvr310", "rgbnt100", "rgbnt201", "synthetic")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "MDREID_VERBOSE")}
    return {**env, "WANDB_MODE": "disabled", **extra}


def cli(module: str, *args: str, cwd: Path, env: dict[str, str] | None = None) -> Proc:
    return subprocess.run(
        [sys.executable, "-m", f"mdreid.{module}", *args],
        cwd=cwd,
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def error_line(proc: Proc) -> str:
    """The one ``error:`` line of a run that failed on bad input: exit code 2, no traceback."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


@dataclass
class Cases:
    """The started CLI runs by case name, and the paths their assertions need."""

    work: Path
    clean: Path  # paths.data_dir of the intact dataset (RGBNT201 under <clean>/synthetic)
    paths: dict[str, Path]
    runs: dict[str, Future[Proc]]

    def __getitem__(self, name: str) -> Proc:
        return self.runs[name].result()


def _variant(
    clean: Path, work: Path, name: str, edit: Callable[[Path], Path | None]
) -> tuple[Path, Path | None]:
    """A hard-linked copy of the clean data dir, changed by ``edit(benchmark folder)`` (files are replaced,
    never written through a link); returns (data dir, the path ``edit`` names)."""
    data_dir = work / "data" / name
    shutil.copytree(clean, data_dir, copy_function=os.link)
    return data_dir, edit(data_dir / "synthetic" / "RGBNT201")


def _drop_ni_file(bench: Path) -> Path:
    gone = sorted((bench / "train_171" / "NI").iterdir())[0]
    gone.unlink()
    return gone


def _truncate_ti_file(bench: Path) -> Path:
    """A test image, so the validation sanity check reads it whatever the PK sampler draws."""
    victim = sorted((bench / "test" / "TI").iterdir())[0]
    data = victim.read_bytes()
    victim.unlink()
    victim.write_bytes(data[: len(data) // 3])
    return victim


def _add_misnamed_copy(bench: Path) -> Path:
    source = sorted((bench / "train_171" / "RGB").iterdir())[0]
    copy = source.with_name(f"{source.stem} (1).jpg")
    os.link(source, copy)
    return copy


def _empty_test_split(bench: Path) -> Path:
    for image in (bench / "test").glob("*/*.jpg"):
        image.unlink()
    return bench / "test"


def _one_camera_per_test_id(bench: Path) -> None:
    """Every remaining gallery match of a query shares its camera: all junk."""
    for image in (bench / "test").glob("*/*_cam2_*.jpg"):
        image.unlink()


def _add_strays(bench: Path) -> None:
    for folder in (bench, bench / "train_171" / "RGB", bench / "test" / "NI"):
        (folder / ".DS_Store").write_bytes(b"\0Bud1")
        (folder / "Thumbs.db").write_bytes(b"\xd0\xcf")
    first = sorted((bench / "train_171" / "TI").iterdir())[0].name
    (bench / "train_171" / "TI" / f"._{first}").write_bytes(b"\0\5\26\7")  # AppleDouble next to the image
    (bench / "__MACOSX" / "train_171" / "RGB").mkdir(parents=True)
    (bench / "__MACOSX" / "train_171" / "RGB" / f"._{first}").write_bytes(b"\0\5\26\7")


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cases]:
    work = tmp_path_factory.mktemp("robustness")
    clean = work / "data" / "clean"
    generate("rgbnt201", clean / "synthetic", ids=12, seed=0, preset="tiny")
    paths: dict[str, Path] = {}
    data: dict[str, Path] = {}
    edits = {
        "missing_modality": _drop_ni_file,
        "corrupt_jpeg": _truncate_ti_file,
        "bad_name": _add_misnamed_copy,
        "empty_split": _empty_test_split,
        "no_positive": _one_camera_per_test_id,
        "strays": _add_strays,
    }
    for name, edit in edits.items():
        data[name], named = _variant(clean, work, name, edit)
        if named is not None:
            paths[name] = named
    paths["blocker"] = work / "a_file"
    paths["blocker"].write_text("not a folder")
    (work / "notes.pt").write_text("not a checkpoint\n")
    nowhere = f"data.root={work / 'nowhere'}"
    paths["good_ckpt"] = work / "runs" / "good" / "checkpoints" / "last.ckpt"
    paths["nan_ckpt"] = work / "runs" / "nan_loss" / "checkpoints" / "last.ckpt"

    def train(name: str, *extra: str, data_dir: Path = clean, env: dict[str, str] | None = None) -> Proc:
        run_dir = f"hydra.run.dir={work / 'runs' / name}"
        return cli("train", *TRAIN, f"paths.data_dir={data_dir}", run_dir, *extra, cwd=work, env=env)

    def evaluate(name: str, *extra: str, data_dir: Path = clean) -> Proc:
        run_dir = f"hydra.run.dir={work / 'runs' / name}"
        ckpt = f"ckpt_path={paths['good_ckpt']}"
        return cli("eval", *EVAL, f"paths.data_dir={data_dir}", run_dir, ckpt, *extra, cwd=work)

    def resume_with_nan_loss() -> Proc:
        paths["nan_ckpt"].parent.mkdir(parents=True)
        shutil.copyfile(paths["good_ckpt"], paths["nan_ckpt"])
        nan = ("trainer.max_epochs=2", "model.loss.id_weight=nan", f"ckpt_path={paths['nan_ckpt']}")
        return train("nan_loss", *CHECKPOINTING, *nan)

    pool = ThreadPoolExecutor(max_workers=2)
    # first the checkpoint that items 7, 9 and 11 need: one epoch, no test
    good = pool.submit(train, "good", *CHECKPOINTING, "test=false")

    def after_good(run: Callable[[], Proc]) -> Callable[[], Proc]:
        def wait_then_run() -> Proc:
            assert good.result().returncode == 0, good.result().stderr[-3000:]
            return run()

        return wait_then_run

    starts: dict[str, Callable[[], Proc]] = {
        "missing_root": partial(train, "missing_root", "data.synth=null", nowhere),
        "missing_root_full_error": partial(
            train, "missing_root_full_error", "data.synth=null", nowhere, env=_env(HYDRA_FULL_ERROR="1")
        ),
        "missing_modality": partial(train, "missing_modality", data_dir=data["missing_modality"]),
        "corrupt_jpeg": partial(train, "corrupt_jpeg", "data.num_workers=2", data_dir=data["corrupt_jpeg"]),
        "bad_name": partial(train, "bad_name", data_dir=data["bad_name"]),
        "empty_split": partial(train, "empty_split", data_dir=data["empty_split"]),
        "unknown_experiment": partial(train, "unknown_experiment", "experiment=market1501"),
        "unknown_dataset": partial(train, "unknown_dataset", "data.dataset=market1501"),
        "unknown_similarity": partial(train, "unknown_similarity", "eval.similarity=cosine"),
        "misspelt_loss_key": partial(train, "misspelt_loss_key", "+model.loss.rol_wieght=1"),
        "weights_missing": partial(
            train, "weights_missing", f"model.backbone.weights={work / 'ViT-B-16.pt'}"
        ),
        "weights_foreign": partial(train, "weights_foreign", f"model.backbone.weights={work / 'notes.pt'}"),
        "run_dir_unwritable": partial(
            cli, "train", *TRAIN, f"hydra.run.dir={paths['blocker'] / 'run'}", cwd=work
        ),
        "output_dir_unwritable": partial(
            train, "output_dir_unwritable", f"paths.output_dir={paths['blocker'] / 'out'}"
        ),
        "no_positive": after_good(partial(evaluate, "no_positive", data_dir=data["no_positive"])),
        "ckpt_mismatch": after_good(partial(evaluate, "ckpt_mismatch", "model.backbone.vision.layers=3")),
        "nan_loss": after_good(resume_with_nan_loss),
    }
    runs = {"good": good, **{name: pool.submit(start) for name, start in starts.items()}}
    yield Cases(work, clean, paths, runs)
    pool.shutdown(cancel_futures=True)


def data_cli(cases: Cases, *args: str, env: dict[str, str] | None = None) -> Proc:
    """``python -m mdreid.data`` imports neither torch nor Lightning: cheap enough to run inline."""
    return cli("data", *args, cwd=cases.work, env=env)


def stats_json(cases: Cases, data_dir: Path, *extra: str) -> Proc:
    root = str(data_dir / "synthetic")
    return data_cli(cases, "stats", "--dataset", "rgbnt201", "--root", root, "--json", *extra)


# --------------------------------------------------------------------------------------------------- data


def test_01_missing_dataset_root_names_the_expected_folder(cases: Cases) -> None:
    expected = cases.work / "nowhere" / "RGBNT201" / "train_171"
    line = error_line(cases["missing_root"])
    assert line.startswith(f"error: RGBNT201: expected {expected}; set data.root")
    # the traceback is there on request: HYDRA_FULL_ERROR=1 for the Hydra CLIs, --verbose for the data CLI
    full = cases["missing_root_full_error"]
    assert full.returncode != 0 and "Traceback" in full.stderr and "MDReIDError" in full.stderr
    verbose = data_cli(
        cases, "stats", "--verbose", "--dataset", "rgbnt201", "--root", str(cases.work / "nowhere")
    )
    assert verbose.returncode != 0 and "Traceback" in verbose.stderr and str(expected) in verbose.stderr


def test_02_missing_modality_file_is_named_with_the_skip_policy(cases: Cases) -> None:
    line = error_line(cases["missing_modality"])
    assert f"1 modality file(s) are missing: {cases.paths['missing_modality']};" in line
    assert "data.on_missing=skip" in line


def test_03_corrupt_jpeg_is_named_at_load_time_even_from_a_worker(cases: Cases) -> None:
    broken = cases.paths["corrupt_jpeg"]
    line = error_line(cases["corrupt_jpeg"])  # data.num_workers=2: raised in a DataLoader worker
    assert line.startswith(f"error: {broken}: cannot read the image (")
    assert "python -m mdreid.data verify" in line and "Caught" not in line
    root = broken.parents[3]
    verify = data_cli(cases, "verify", "--dataset", "rgbnt201", "--root", str(root))
    assert verify.returncode == 1
    assert verify.stdout.splitlines()[0].startswith("1 of ") and f"  {broken}: " in verify.stdout


def test_04_stray_os_files_are_ignored_silently(cases: Cases) -> None:
    clean = stats_json(cases, cases.clean)
    strays = stats_json(cases, cases.work / "data" / "strays")
    assert strays.returncode == 0 and strays.stderr == ""
    assert json.loads(strays.stdout) == json.loads(clean.stdout)


def test_05_misnamed_file_is_listed_then_rejected_or_skipped_by_policy(cases: Cases) -> None:
    bad = cases.paths["bad_name"]
    line = error_line(cases["bad_name"])
    assert f"do not follow the name rule PPPPPP_camC_S_FF.jpg: {bad};" in line
    assert "data.on_bad_name=skip" in line
    skipped = stats_json(cases, cases.work / "data" / "bad_name", "--on-bad-name", "skip")
    assert skipped.returncode == 0
    assert json.loads(skipped.stdout) == json.loads(stats_json(cases, cases.clean).stdout)
    assert skipped.stderr.strip().splitlines() == [
        "warning: RGBNT201: ignored 1 .jpg file(s) that do not follow the name rule PPPPPP_camC_S_FF.jpg "
        f"(data.on_bad_name=skip): {bad}"
    ]


def test_06_empty_split_names_its_folder(cases: Cases) -> None:
    line = error_line(cases["empty_split"])
    assert f"split folder {cases.paths['empty_split']} holds no usable triplets" in line


def test_07_no_query_with_a_valid_positive_is_one_line(cases: Cases) -> None:
    line = error_line(cases["no_positive"])
    assert line.startswith("error: no query has a valid positive in the ")
    assert "same pid and same camera/scene" in line


# -------------------------------------------------------------------------------------------- configuration


def test_08_unknown_names_list_the_valid_ones(cases: Cases) -> None:
    unknown = error_line(cases["unknown_experiment"])  # before any run starts, with the valid options
    assert unknown.startswith("error: experiment=market1501: no such option; options: ")
    assert set(EXPERIMENTS) <= set(unknown.split("options: ")[1].split(", "))
    line = error_line(cases["unknown_dataset"])
    assert line.startswith(
        "error: data.dataset='market1501': no dataset reader has that name (known: rgbnt201, rgbnt100, msvr310, "
        "wmveid863, manifest"
    )
    assert "@register_reader('market1501')" in line and "install your package" in line
    line = error_line(cases["unknown_similarity"])
    assert "similarity" in line and "'cosine'" in line and line.endswith("use one of code, paper, common")
    line = error_line(cases["misspelt_loss_key"])  # checked against the config before the run: names the key
    assert line == (
        "error: +model.loss.rol_wieght: model.loss.rol_wieght is no key of this config; "
        "did you mean model.loss.rol_weight?"
    )


def test_09_a_command_line_model_the_checkpoint_contradicts_names_both_values(cases: Cases) -> None:
    line = error_line(cases["ckpt_mismatch"])
    assert line == (
        f"error: the command line contradicts the checkpoint {cases.paths['good_ckpt']}: "
        "model.backbone.vision.layers=3 (the checkpoint has 2); the checkpoint defines the model: drop these "
        "overrides"
    )


def test_10_backbone_weights_missing_or_not_clip(cases: Cases) -> None:
    line = error_line(cases["weights_missing"])
    assert line.startswith(f"error: model.backbone.weights={cases.work / 'ViT-B-16.pt'}: file not found;")
    line = error_line(cases["weights_foreign"])
    assert line.startswith(f"error: model.backbone.weights={cases.work / 'notes.pt'}: not a readable CLIP")
    assert "convert_clip_weights.py" in line


# ----------------------------------------------------------------------------------------------- run time


def test_11_non_finite_loss_stops_with_the_step_and_keeps_the_last_checkpoint(cases: Cases) -> None:
    good = cases.paths["good_ckpt"]
    resumed_from = cases.paths["nan_ckpt"]
    step = torch.load(good, map_location="cpu", weights_only=False)["global_step"]
    line = error_line(cases["nan_loss"])
    assert line.startswith(f"error: non-finite loss (nan) at global step {step} (epoch 1): training stopped")
    assert f"last good checkpoint (kept): {resumed_from};" in line
    # the checkpoint folder of the failed run holds the good checkpoint, byte for byte, and nothing else
    assert [p.name for p in resumed_from.parent.iterdir()] == ["last.ckpt"]
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (good, resumed_from)]
    assert digest[0] == digest[1]


class _Diverge(Callback):
    """Turns the weights into NaN after the optimizer step, as an overflowing update would."""

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object) -> None:
        with torch.no_grad():
            next(pl_module.parameters()).fill_(float("nan"))


def test_11_diverged_weights_are_never_checkpointed(tiny_cfg, tmp_path: Path) -> None:
    """A finite loss can still produce NaN weights; the epoch-end checkpoint must not overwrite a good one."""
    cfg = tiny_cfg("train.yaml")
    datamodule = build_datamodule(DataConfig.parse(cfg.data))
    model = build_module(cfg, datamodule)
    folder = tmp_path / "checkpoints"
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=1,
        limit_val_batches=0,
        use_distributed_sampler=False,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[ModelCheckpoint(dirpath=folder, save_last=True), _Diverge()],
    )
    with pytest.raises(
        MDReIDError, match=r"^non-finite weights at global step 1 \(epoch 0\).*none written yet"
    ):
        trainer.fit(model, datamodule=datamodule)
    assert not folder.exists() or not any(folder.iterdir())


def test_12_unwritable_output_folder_is_one_line_before_any_work(cases: Cases) -> None:
    blocker = cases.paths["blocker"]
    line = error_line(cases["run_dir_unwritable"])  # Hydra would fail creating it, with a traceback
    assert line.startswith(
        f"error: hydra.run.dir={blocker / 'run'} cannot be written ({blocker}: not a folder)"
    )
    assert "paths.log_dir / MDREID_ROOT" in line
    line = error_line(cases["output_dir_unwritable"])
    assert line.startswith(f"error: paths.output_dir={blocker / 'out'} cannot be written ({blocker}: ")
    assert "Seed set" not in cases["output_dir_unwritable"].stderr  # checked before anything else runs
