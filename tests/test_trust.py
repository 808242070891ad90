"""Trust: a user's file is read as data, never run as code; the checkpoint, not the command line, defines the
model at evaluation; evaluation needs no training split; cameras the model never saw are an error or, when
asked, get no camera embedding."""

from __future__ import annotations

import csv
import json
import logging
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from checkpoint_files import Payload, booby_trapped, save_checkpoint, save_pretraining_checkpoint
from conftest import TINY_OVERRIDES, compose_cfg
from mdreid.checkpoint import resolve_checkpoint
from mdreid.data.bit_depth import BitDepthRule
from mdreid.data.data_config import DataConfig
from mdreid.data.readers import load_benchmark
from mdreid.data.readers.manifest import write_manifest
from mdreid.eval import evaluate
from mdreid.export import export
from mdreid.factory import (
    adopt_architecture,
    adopt_checkpoint_images,
    build_datamodule,
    build_module,
    check_cameras,
    load_module,
)
from mdreid.metrics.eval_config import EvalConfig
from mdreid.modalities import MODALITIES
from mdreid.models.backbone import build_backbone
from mdreid.official import convert, load_official_checkpoint
from mdreid.pretrain.cli import pretrain
from mdreid.process.errors import MDReIDError
from mdreid.train import train
from test_config_keys import one_error

REFUSED = r"asks to run posix\.mkdir while loading.*(trust_checkpoint=true|--trust-checkpoint)"


@pytest.fixture
def eval_cfg(synthetic_data_dir: Path, tmp_path: Path) -> Callable[..., DictConfig]:
    """``tiny_cfg`` for eval.yaml, which has no callbacks group."""

    def make(*extra: str, output_dir: Path | None = None) -> DictConfig:
        tiny = [o for o in TINY_OVERRIDES if not o.startswith("callbacks=")]
        overrides = [*tiny, f"paths.data_dir={synthetic_data_dir}", *extra]
        return compose_cfg("eval.yaml", overrides, output_dir or tmp_path / "eval")

    return make


@pytest.fixture
def evil(tmp_path: Path) -> tuple[Path, Path]:
    """A booby-trapped checkpoint and the marker its payload would create."""
    marker = tmp_path / "payload-ran"
    return booby_trapped(tmp_path / "evil.pth", marker), marker


def test_a_booby_trapped_checkpoint_never_runs_from_any_entry_point(
    evil: tuple[Path, Path],
    tiny_cfg: Callable[..., DictConfig],
    eval_cfg: Callable[..., DictConfig],
    tmp_path: Path,
) -> None:
    path, marker = evil
    entry_points: dict[str, Callable[[], object]] = {
        "eval ckpt_path": lambda: evaluate(eval_cfg(f"ckpt_path={path}")),
        "train ckpt_path": lambda: train(tiny_cfg("train.yaml", f"ckpt_path={path}")),
        "train init_from": lambda: train(tiny_cfg("train.yaml", f"init_from={path}")),
        "export": lambda: export(compose_cfg("export.yaml", [f"ckpt_path={path}"], tmp_path / "export")),
        "official convert": lambda: convert(path, tmp_path / "out.ckpt", "rgbnt201"),
        "load_official_checkpoint": lambda: load_official_checkpoint(path),
        "load_module": lambda: load_module(path),
        "pretrain resume": lambda: pretrain(
            compose_cfg("pretrain.yaml", [f"ckpt_path={path}"], tmp_path / "pretrain")
        ),
    }
    for name, call in entry_points.items():
        with pytest.raises(MDReIDError, match=REFUSED):
            call()
        assert not marker.exists(), f"{name} ran the file's code"
    with pytest.raises(MDReIDError) as refused:  # the converter is vouched for by its flag, not an override
        convert(path, tmp_path / "out.ckpt", "rgbnt201")
    assert str(refused.value).startswith("SRC=") and "trust_checkpoint=true" not in str(refused.value)
    assert str(refused.value).endswith(
        "convert it with --trust-checkpoint (that runs whatever code the file carries)"
    )
    with pytest.raises(MDReIDError, match=r"model\.backbone\.weights=.*asks to run posix\.mkdir"):
        vision = {"width": 32, "layers": 1, "heads": 2, "patch_size": 8}
        build_backbone(weights=str(path), image_size=(32, 16), vision=vision, embed_dim=16)
    assert not marker.exists(), "model.backbone.weights ran the file's code"


def test_trust_checkpoint_is_the_users_explicit_say_so(evil: tuple[Path, Path]) -> None:
    path, marker = evil
    resolve_checkpoint(path, trust=True)
    assert marker.is_dir()  # it ran: exactly what the flag's documentation warns about


def test_the_eval_cli_refuses_it_in_one_line(evil: tuple[Path, Path], tmp_path: Path) -> None:
    path, marker = evil
    run = subprocess.run(
        [sys.executable, "-m", "mdreid.eval", f"ckpt_path={path}", f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert run.returncode == 2, run.stderr[-2000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "posix.mkdir" in errors[0] and "Traceback" not in run.stderr
    assert not marker.exists()


def test_a_plain_pickle_is_one_line_and_never_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """``pickle.dump`` of a payload (not ``torch.save``): torch's weights-only error would suggest loading it
    with ``weights_only=False``, which runs the payload and still cannot read the file."""
    marker = tmp_path / "payload-ran"
    path = tmp_path / "plain.pth"
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        path.write_bytes(
            pickle.dumps({"state_dict": {"net.w": torch.zeros(2)}, "x": Payload(marker)}, protocol)
        )
        line = one_error(
            "eval", [f"ckpt_path={path}", f"hydra.run.dir={tmp_path / f'run{protocol}'}"], monkeypatch, capsys
        )
        assert line == (
            f"error: ckpt_path='{path}' is a plain Python pickle (pickle.dump), not a file torch.save wrote, so "
            "it was not loaded (unpickling it runs whatever code it carries); if you trust its source, load it "
            "yourself and save the tensors with torch.save(state_dict, FILE)"
        )
        with pytest.raises(MDReIDError, match="is a plain Python pickle"):
            resolve_checkpoint(path, trust=True)  # torch.load could not read it anyway
        assert not marker.exists()
    legacy = tmp_path / "legacy.pth"  # torch.save's pre-zip format is a pickle too, and still readable
    torch.save({"net.w": torch.zeros(2)}, legacy, _use_new_zipfile_serialization=False)
    assert resolve_checkpoint(legacy).official


def test_a_checkpoint_of_the_other_kind_is_one_line_naming_what_to_pass(
    tiny_cfg: Callable[..., DictConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A pretraining run's last.ckpt given to train, eval or export points to its tower file; a fine-tuning
    run's last.ckpt given to pretrain is refused before the pool is rendered."""
    pretrained = save_pretraining_checkpoint(tmp_path / "pre")
    tower = tmp_path / "pre" / "proxy_foundation.safetensors"
    expected = (
        f"error: {{key}}='{pretrained}' is a pretraining checkpoint (mdreid.pretrain's resume point): a visual "
        f"tower, not a re-identification model; fine-tune from its tower with mdreid.train "
        f"model.backbone.weights={tower} (or score the tower with mdreid.pretrain.zero_shot out=FILE)"
    )
    for entry, key in (("eval", "ckpt_path"), ("export", "ckpt_path"), ("train", "init_from")):
        argv = [f"{key}={pretrained}", f"hydra.run.dir={tmp_path / entry}"]
        assert one_error(entry, argv, monkeypatch, capsys) == expected.format(key=key)
    tower.unlink()  # the run's tower moved elsewhere (another out=)
    with pytest.raises(
        MDReIDError, match=r"model\.backbone\.weights=the \.safetensors that run wrote \(out="
    ):
        resolve_checkpoint(pretrained)

    finetuned = tmp_path / "fine" / "checkpoints" / "last.ckpt"
    finetuned.parent.mkdir(parents=True)
    save_checkpoint(tiny_cfg, finetuned)
    pool = tmp_path / "data" / "pretrain_pool"
    argv = [
        f"ckpt_path={finetuned}",
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.run.dir={tmp_path / 'p'}",
    ]
    assert one_error("pretrain", argv, monkeypatch, capsys) == (
        f"error: ckpt_path='{finetuned}' is a fine-tuning checkpoint (mdreid.train); pretrain resumes only its "
        "own <run dir>/checkpoints/last.ckpt, and a later stage starts from an earlier stage's tower with "
        "init_weights=FILE.safetensors"
    )
    assert not pool.exists()  # refused before any rendering
    assert resolve_checkpoint(pretrained, pretraining=True).resumable


def test_mdreid_checkpoints_load_without_trust(tiny_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    """What mdreid writes (here with OmegaConf values among the hyper-parameters) needs no trust."""
    path = tmp_path / "last.ckpt"
    module = save_checkpoint(tiny_cfg, path)
    payload = torch.load(path, weights_only=False)
    # as Lightning saves a DataModule's hyper-parameters given as OmegaConf values
    payload["datamodule_hyper_parameters"] = OmegaConf.create({"image_size": [64, 32], "synth": {"ids": 12}})
    torch.save(payload, path)
    loaded = load_module(path)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in module.state_dict().items())


# ---------------------------------------------------------------------------- the checkpoint defines the model
@pytest.fixture
def trained(tiny_cfg: Callable[..., DictConfig], tmp_path: Path) -> Path:
    """A tiny 2-head model of 12 identities and 3 cameras (the synthetic copy's training cameras)."""
    path = tmp_path / "ckpt" / "last.ckpt"
    path.parent.mkdir()
    save_checkpoint(tiny_cfg, path)
    return path


def test_eval_refuses_a_command_line_model_the_checkpoint_contradicts(
    trained: Path, eval_cfg: Callable[..., DictConfig]
) -> None:
    for override, message in (
        ("model.backbone.vision.heads=4", r"model\.backbone\.vision\.heads=4 \(the checkpoint has 2\)"),
        ("data.image_size=[128,64]", r"data\.image_size=\[128, 64\] \(the checkpoint has \[64, 32\]\)"),
        ("model=baseline", r"model\.mdl\.decoupled=False \(the checkpoint has True\)"),
        ("model.loss.rol_weight=0", r"model\.loss\.rol_weight=0 \(the checkpoint has 1\.5\)"),
    ):
        with pytest.raises(MDReIDError, match=message):
            evaluate(eval_cfg(f"ckpt_path={trained}", override))


def _metrics(folder: Path) -> list[dict]:
    return json.loads((folder / "metrics.json").read_text())["rows"]


def test_eval_builds_the_checkpoints_model_without_a_training_split(
    trained: Path, eval_cfg: Callable[..., DictConfig], synthetic_data_dir: Path, tmp_path: Path
) -> None:
    """No model override at all (eval.yaml's default tower is ViT-B/16), and a manifest with query and gallery
    rows only: the model, its input size and its identity count come from the checkpoint."""
    reference = eval_cfg(f"ckpt_path={trained}", "eval.plots=false", output_dir=tmp_path / "full")
    evaluate(reference)
    bench = load_benchmark("rgbnt201", str(Path(reference.data.root)))
    manifest = write_manifest(bench, tmp_path / "all.csv")
    rows = list(csv.DictReader(manifest.open()))
    test_only = tmp_path / "test_only.csv"
    with test_only.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(r for r in rows if r["split"] != "train")
    overrides = [
        f"ckpt_path={trained}",
        f"paths.data_dir={synthetic_data_dir}",
        "data=manifest",
        f"data.manifest={test_only}",
        "data.num_workers=0",
        "eval.plots=false",
        "eval.max_rank=10",
        "trainer=cpu",
        "trainer.enable_progress_bar=false",
    ]
    evaluate(compose_cfg("eval.yaml", overrides, tmp_path / "test_only"))
    assert (
        _metrics(tmp_path / "test_only") == _metrics(tmp_path / "full")
        and len(_metrics(tmp_path / "full")) == 49
    )


def test_cameras_the_model_never_saw(
    tiny_cfg: Callable[..., DictConfig], eval_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    """A 1-camera model on data from cameras 0 and 1: an error naming the counts, or no camera embedding
    when asked (the same features as a zero camera embedding)."""
    path = tmp_path / "one.ckpt"
    save_checkpoint(tiny_cfg, path, num_cameras=1)
    with pytest.raises(MDReIDError, match=r"camera ids \[1\].*has 1 rows.*eval\.unseen_cameras=no_embedding"):
        evaluate(eval_cfg(f"ckpt_path={path}"))
    cfg = eval_cfg(f"ckpt_path={path}", "eval.unseen_cameras=no_embedding", "eval.plots=false")
    assert len(evaluate(cfg)) > 0
    model = load_module(path)
    images, present = torch.randn(2, 3, 64, 32, generator=torch.Generator().manual_seed(0)), torch.ones(2, 3)
    batch = {m: images for m in MODALITIES}
    without = model.net.extract(batch, present.bool(), torch.tensor([-1, -1]))
    with torch.no_grad():
        model.net.mdl.cv_embed.zero_()
    zeroed = model.net.extract(batch, present.bool(), torch.tensor([0, 0]))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(without, zeroed, strict=True))


def test_the_unseen_camera_warning_counts_each_image_once(
    tiny_cfg: Callable[..., DictConfig], synthetic_data_dir: Path, tmp_path: Path, caplog
) -> None:
    """RGBNT201's query list is its gallery list: an image of an unseen camera is one image, not two."""
    path = tmp_path / "one.ckpt"
    save_checkpoint(tiny_cfg, path, num_cameras=1)
    bench = build_datamodule(
        DataConfig.parse(tiny_cfg().data), validation=False
    ).benchmark  # the synthetic RGBNT201 copy
    assert bench.query_is_gallery
    unseen = [r for r in bench.query if r.camid >= 1]
    evaluation = EvalConfig.parse({"unseen_cameras": "no_embedding"})
    caplog.clear()  # the copy's generation logs too
    with caplog.at_level(logging.WARNING, logger="mdreid.factory"):
        check_cameras(load_module(path), SimpleNamespace(benchmark=bench), evaluation)
    cameras = len({r.camid for r in unseen})
    assert caplog.messages == [
        f"{len(unseen)} evaluation images from {cameras} unseen cameras get no camera embedding"
    ]
    assert 0 < len(unseen) < len(bench.query)


def test_init_from_takes_the_checkpoints_architecture(
    trained: Path, tiny_cfg: Callable[..., DictConfig], synthetic_data_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(MDReIDError, match=r"model\.backbone\.vision\.layers=3 \(the checkpoint has 2\)"):
        train(tiny_cfg("train.yaml", f"init_from={trained}", "model.backbone.vision.layers=3"))
    # the synthetic experiment's own tower is 4 layers of width 128: the checkpoint's 2 x 64 is taken instead
    overrides = ["experiment=synthetic", f"paths.data_dir={synthetic_data_dir}", "data.synth.ids=12"]
    cfg = compose_cfg("train.yaml", [*overrides, f"init_from={trained}"], tmp_path / "fine-tune")
    given = adopt_architecture(cfg, resolve_checkpoint(trained))
    assert (cfg.model.backbone.vision.width, cfg.model.backbone.vision.layers) == (128, 4)  # a new config
    cfg = given
    assert (cfg.model.backbone.vision.width, cfg.model.backbone.vision.layers) == (64, 2)
    assert list(cfg.data.image_size) == [64, 32] and cfg.model.backbone.weights is None
    data = type("Data", (), {"num_classes": 12, "num_cameras": 3, "junk_rule": "camera"})()
    load_module(resolve_checkpoint(trained), build_module(cfg, data))  # strict: every key and shape fits


def test_eval_maps_high_bit_depth_images_as_the_training_did(
    trained: Path, eval_cfg: Callable[..., DictConfig]
) -> None:
    payload = torch.load(trained, weights_only=True)
    payload["datamodule_hyper_parameters"] = {"high_bit_depth": {"mode": "range", "range": [0, 65535]}}
    torch.save(payload, trained)
    cfg = eval_cfg(f"ckpt_path={trained}")
    data = DataConfig.parse(cfg.data)
    adopted = adopt_checkpoint_images(cfg, data, resolve_checkpoint(trained))
    assert data.high_bit_depth == BitDepthRule()  # a new value: the given one stays as it was
    assert adopted.high_bit_depth == BitDepthRule("range", (0.0, 65535.0))
    assert adopted.image_size == (64, 32)  # the size the checkpoint was trained on
    contradicting = eval_cfg(f"ckpt_path={trained}", "data.high_bit_depth.mode=stretch")
    with pytest.raises(MDReIDError, match=r"asks for min-max stretch.*trained with .*65535"):
        adopt_checkpoint_images(
            contradicting, DataConfig.parse(contradicting.data), resolve_checkpoint(trained)
        )
