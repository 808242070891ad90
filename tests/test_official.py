"""Officially released MDReID checkpoints: the official state-dict layout, written out here key by key with
small widths, loads through the Python entry point, eval, export and the converter, and gives the features
of a hand-written official forward."""

from __future__ import annotations

import math
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from conftest import TINY_OVERRIDES, compose_cfg
from mdreid.data.data_config import DataConfig
from mdreid.eval import evaluate
from mdreid.export import export
from mdreid.factory import build_datamodule, build_module, load_module
from mdreid.modalities import MODALITIES
from mdreid.official import convert, load_official_checkpoint
from mdreid.official.cli import main
from mdreid.official.layout import convert_official
from mdreid.process.errors import MDReIDError
from mdreid.train import train
from test_config_keys import one_error

WIDTH, LAYERS, PATCH, EMBED = 64, 2, 16, 32  # one attention head: CLIP's width // 64
HEADS = ("r", "n", "t", "s", "rs", "ns", "ts")  # BNNeck heads of the official model, E-loss heads last
UNUSED_HEADS = ("rs", "ns", "ts")


def official_state(
    num_classes: int, num_cameras: int, grid: int, seed: int = 0, tied: bool = True
) -> dict[str, torch.Tensor]:
    """A state dict named and shaped as the official ``MDReID`` model's (ViT tower, ADD_SHARE, ADD_ELOSS)."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape: int, std: float = 0.02, mean: float = 0.0) -> torch.Tensor:
        return mean + std * torch.randn(*shape, generator=gen)

    d, e = WIDTH, EMBED
    tower = {
        "conv1.weight": rand(d, 3, PATCH, PATCH),
        "class_embedding": rand(d, std=0.1),
        "positional_embedding": rand(grid + 2, d, std=0.1),
        "ln_pre.weight": rand(d, std=0.1, mean=1.0),
        "ln_pre.bias": rand(d),
        "ln_post.weight": rand(d, std=0.1, mean=1.0),
        "ln_post.bias": rand(d),
        "proj": rand(d, e, std=d**-0.5),
    }
    tower["add_image_token"] = tower["class_embedding"].clone() if tied else rand(d, std=0.1)
    for i in range(LAYERS):
        block = {
            "attn.in_proj_weight": rand(3 * d, d, std=0.1),
            "attn.in_proj_bias": rand(3 * d),
            "attn.out_proj.weight": rand(d, d, std=0.1),
            "attn.out_proj.bias": rand(d),
            "ln_1.weight": rand(d, std=0.1, mean=1.0),
            "ln_1.bias": rand(d),
            "mlp.c_fc.weight": rand(4 * d, d, std=0.1),
            "mlp.c_fc.bias": rand(4 * d),
            "mlp.c_proj.weight": rand(d, 4 * d, std=0.05),
            "mlp.c_proj.bias": rand(d),
            "ln_2.weight": rand(d, std=0.1, mean=1.0),
            "ln_2.bias": rand(d),
        }
        tower.update({f"transformer.resblocks.{i}.{k}": v for k, v in block.items()})
    state = {f"BACKBONE.base.{k}": v for k, v in tower.items()}
    state["BACKBONE.cv_embed"] = rand(num_cameras, 1, d, std=0.5)
    for tag in HEADS:
        dim = {"s": 3 * e, "rs": 2 * e, "ns": 2 * e, "ts": 2 * e}.get(tag, e)
        state[f"classifier_{tag}.weight"] = rand(num_classes, dim, std=0.001)
        state[f"bottleneck_{tag}.weight"] = rand(dim, std=0.1, mean=1.0)
        state[f"bottleneck_{tag}.bias"] = torch.zeros(dim)
        state[f"bottleneck_{tag}.running_mean"] = rand(dim)
        state[f"bottleneck_{tag}.running_var"] = rand(dim, std=0.1, mean=1.0).abs()
        state[f"bottleneck_{tag}.num_batches_tracked"] = torch.tensor(100)
    return state


def _ln(x: torch.Tensor, sd: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), sd[f"{key}.weight"], sd[f"{key}.bias"], eps=1e-5)


def reference_tokens(
    state: dict[str, torch.Tensor], image: torch.Tensor, camid: torch.Tensor
) -> torch.Tensor:
    """The official ViT forward written out by hand: ``[N, 2, EMBED]`` (class/specific, shared) tokens."""
    sd = {k.removeprefix("BACKBONE.base."): v for k, v in state.items()}
    x = F.conv2d(image, sd["conv1.weight"], stride=PATCH).flatten(2).transpose(1, 2)
    n, d = x.shape[0], x.shape[-1]
    cls = sd["class_embedding"].expand(n, 1, d) + state["BACKBONE.cv_embed"][camid]
    shared = sd["add_image_token"].reshape(1, 1, d).expand(n, 1, d)
    x = _ln(torch.cat([cls, shared, x], 1) + sd["positional_embedding"], sd, "ln_pre")
    heads = max(1, d // 64)
    for i in range(LAYERS):
        b = f"transformer.resblocks.{i}."
        q, k, v = (
            _ln(x, sd, b + "ln_1") @ sd[b + "attn.in_proj_weight"].T + sd[b + "attn.in_proj_bias"]
        ).chunk(3, -1)
        q, k, v = (t.unflatten(-1, (heads, d // heads)).transpose(1, 2) for t in (q, k, v))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // heads), -1) @ v
        att = att.transpose(1, 2).flatten(2) @ sd[b + "attn.out_proj.weight"].T + sd[b + "attn.out_proj.bias"]
        x = x + att
        h = _ln(x, sd, b + "ln_2") @ sd[b + "mlp.c_fc.weight"].T + sd[b + "mlp.c_fc.bias"]
        x = x + (h * torch.sigmoid(1.702 * h)) @ sd[b + "mlp.c_proj.weight"].T + sd[b + "mlp.c_proj.bias"]
    return _ln(x[:, :2], sd, "ln_post") @ sd["proj"]


def check_features(model, state: dict[str, torch.Tensor], size: tuple[int, int], num_cameras: int) -> None:
    """``net.extract`` on three modalities equals the hand-written official forward of each, to 1e-5."""
    gen = torch.Generator().manual_seed(7)
    images = {key: torch.randn(3, 3, *size, generator=gen) for key in MODALITIES}
    camid = torch.arange(3) % num_cameras
    with torch.no_grad():
        sp, sh = model.net.extract(images, torch.ones(3, len(MODALITIES), dtype=torch.bool), camid)
        for m, key in enumerate(MODALITIES):
            ref = reference_tokens(state, images[key], camid)
            torch.testing.assert_close(sp[:, m], ref[:, 0], atol=1e-5, rtol=0)
            torch.testing.assert_close(sh[:, m], ref[:, 1], atol=1e-5, rtol=0)


# RGBNT201's signature (171 training identities, 4 cameras) at 256x128: a 16x8 grid of 16-pixel patches
PERSONS = dict(num_classes=171, num_cameras=4, grid=128)


def test_every_key_is_mapped_or_listed_unused_and_sizes_are_inferred() -> None:
    state = official_state(**PERSONS)
    conv = convert_official(state, "x.pth")
    unused = {f"{kind}_{tag}.{p}" for tag in UNUSED_HEADS for kind, p in (("classifier", "weight"),)}
    unused |= {
        f"bottleneck_{tag}.{p}"
        for tag in UNUSED_HEADS
        for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    }
    unused.add("BACKBONE.base.add_image_token")  # the tied copy of class_embedding
    assert set(conv.unused) == unused
    assert set(conv.origin.values()) | set(conv.unused) == set(state)
    lay = conv.layout
    assert (lay.num_classes, lay.num_cameras, lay.grid_tokens, lay.tie_tokens) == (171, 4, 128, True)
    assert (lay.width, lay.layers, lay.patch_size, lay.embed_dim, lay.mlp_ratio) == (
        WIDTH,
        LAYERS,
        PATCH,
        EMBED,
        4.0,
    )
    assert lay.benchmark() == "rgbnt201"


@pytest.mark.parametrize("wrap", ["plain", "model", "state_dict", "module."])
def test_python_entry_point_gives_the_official_features(tmp_path: Path, wrap: str) -> None:
    state = official_state(**PERSONS, seed=1)
    saved = {
        "plain": state,
        "model": {"model": state, "epoch": 50},
        "state_dict": {"state_dict": state},
        "module.": {f"module.{k}": v for k, v in state.items()},
    }[wrap]
    torch.save(saved, tmp_path / "MDReID_RGBNT201.pth")
    model = load_official_checkpoint(tmp_path / "MDReID_RGBNT201.pth")
    assert not model.training and tuple(model.hparams["image_size"]) == (256, 128)
    assert (model.hparams["num_classes"], model.hparams["num_cameras"]) == (171, 4)
    check_features(model, state, (256, 128), 4)


def test_untied_shared_token_and_vehicle_grid(tmp_path: Path) -> None:
    """RGBNT100's signature gives 128x256; a shared token that differs from the class token is kept."""
    state = official_state(num_classes=50, num_cameras=8, grid=128, seed=2, tied=False)
    torch.save(state, tmp_path / "v.pth")
    model = load_official_checkpoint(tmp_path / "v.pth")
    assert tuple(model.hparams["image_size"]) == (128, 256)
    assert model.net.mdl.shared_token is not None
    check_features(model, state, (128, 256), 8)


def test_grid_of_an_unknown_benchmark_needs_the_image_size(tmp_path: Path) -> None:
    torch.save(official_state(num_classes=7, num_cameras=3, grid=32), tmp_path / "own.pth")
    with pytest.raises(MDReIDError, match=r"match no released benchmark.*image_size=\[H,W\]"):
        load_official_checkpoint(tmp_path / "own.pth")
    with pytest.raises(MDReIDError, match=r"32 patch positions, but image size \[64,64\].* gives 16"):
        load_official_checkpoint(tmp_path / "own.pth", image_size=(64, 64))
    model = load_official_checkpoint(tmp_path / "own.pth", image_size=(128, 64))
    assert tuple(model.hparams["image_size"]) == (128, 64)


def _error(path: Path, state: object, **kw: object) -> str:
    torch.save(state, path)
    with pytest.raises(MDReIDError) as info:
        load_official_checkpoint(path, **kw)
    return str(info.value)


def test_bad_files_are_named_errors(tmp_path: Path) -> None:
    state = official_state(**PERSONS)
    clip = {
        f"visual.{k.removeprefix('BACKBONE.base.')}": v
        for k, v in state.items()
        if k.startswith("BACKBONE.base.")
    }
    msg = _error(tmp_path / "clip.pth", clip)
    assert "is not an official MDReID checkpoint" in msg
    assert "missing BACKBONE.base.class_embedding" in msg and "unexpected visual.add_image_token" in msg
    # another family of the same code base (TOP-ReID / DeMo style): extra fusion modules, no shared head
    other = {k: v for k, v in state.items() if not k.startswith(("classifier_s", "bottleneck_s"))}
    other |= {"TPM.attn.in_proj_weight": torch.zeros(3, 3), "CRM.linear.weight": torch.zeros(3, 3)}
    msg = _error(tmp_path / "topreid.pth", other)
    assert "unexpected CRM.linear.weight, TPM.attn.in_proj_weight" in msg
    msg = _error(
        tmp_path / "demo.pth",
        {k: v for k, v in state.items() if not k.startswith(("classifier_s", "bottleneck_s"))},
    )
    assert "missing: bottleneck_s.bias, bottleneck_s.num_batches_tracked" in msg
    bad = dict(state)
    bad["BACKBONE.base.transformer.resblocks.1.mlp.c_fc.bias"] = torch.full((4 * WIDTH,), float("nan"))
    msg = _error(tmp_path / "nan.pth", bad)
    assert "holds non-finite weights (NaN or Inf)" in msg and "resblocks.1.mlp.c_fc.bias" in msg
    torch.save(state, tmp_path / "full.pth")
    blob = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(MDReIDError, match=r"cut\.pth' is not a readable checkpoint"):
        load_official_checkpoint(tmp_path / "cut.pth")
    with pytest.raises(MDReIDError, match="holds no model weights"):
        load_module(_saved(tmp_path / "list.pth", [1, 2, 3]))


def _saved(path: Path, obj: object) -> Path:
    torch.save(obj, path)
    return path


def test_a_checkpoint_of_another_benchmark_names_the_contradiction(tiny_cfg, tmp_path: Path) -> None:
    """An RGBNT100 checkpoint into a model configured for RGBNT201's identities and cameras."""
    cfg = tiny_cfg("train.yaml", "model.backbone.vision.width=64", "data.image_size=[256,128]")
    data = type("Data", (), {"num_classes": 171, "num_cameras": 4, "junk_rule": "camera"})()
    model = build_module(cfg, data)
    path = _saved(tmp_path / "MDReID_RGBNT100.pth", official_state(num_classes=50, num_cameras=8, grid=128))
    with pytest.raises(MDReIDError) as info:
        load_module(path, model)
    assert str(info.value).endswith(
        "does not fit the configured model: 50 identities (the config has 171), 8 cameras (the config has 4); "
        "it looks like a RGBNT100 checkpoint: use experiment=rgbnt100"
    )


# ------------------------------------------------------------------------------ eval, export, convert, train

# the official file's tower in config terms (TINY_OVERRIDES but one head, as CLIP has per 64 channels)
TOWER = [f"model.backbone.vision.{k}" for k in ("width=64", "heads=1", "layers=2", "patch_size=16")]
TOWER.append("model.backbone.embed_dim=32")


def eval_cfg(data_dir: Path, out: Path, *extra: str) -> DictConfig:
    """``python -m mdreid.eval`` on the tiny synthetic data with the official file's tower."""
    tiny = [o for o in TINY_OVERRIDES if not o.startswith("callbacks=")]  # eval.yaml has no callbacks group
    return compose_cfg(
        "eval.yaml", [*tiny, *TOWER, f"paths.data_dir={data_dir}", "eval.plots=false", *extra], out
    )


@pytest.fixture
def official_file(synthetic_data_dir: Path, tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """An official-layout file sized for the tiny synthetic data (its identities, cameras, 64x32 grid)."""
    data = build_datamodule(DataConfig.parse(eval_cfg(synthetic_data_dir, tmp_path / "probe").data))
    state = official_state(data.num_classes, data.num_cameras, grid=8, seed=3)
    return _saved(tmp_path / "official.pth", state), state


def test_eval_export_convert_and_fine_tune_from_an_official_file(
    official_file, tiny_cfg, synthetic_data_dir: Path, tmp_path: Path
) -> None:
    path, state = official_file
    direct = evaluate(eval_cfg(synthetic_data_dir, tmp_path / "run1", f"ckpt_path={path}"))
    assert 0.0 < direct["test/RNT->RNT/mAP"] <= 100.0

    converted = convert(path, tmp_path / "converted.ckpt", "synthetic", ["data.image_size=[64,32]", *TOWER])
    # the converted checkpoint scores exactly as the official file
    assert evaluate(eval_cfg(synthetic_data_dir, tmp_path / "run2", f"ckpt_path={converted}")) == direct

    rebuilt = load_module(converted)  # what export does: no config, hyper-parameters from the file
    check_features(rebuilt, state, (64, 32), rebuilt.hparams["num_cameras"])

    exp = [f"ckpt_path={path}", "format=torchscript", "image_size=[64,32]", f"out={tmp_path / 'official.pt'}"]
    traced = torch.jit.load(str(export(compose_cfg("export.yaml", exp, tmp_path / "export"))))
    image, camid = torch.randn(2, 3, 64, 32, generator=torch.Generator().manual_seed(5)), torch.tensor([0, 1])
    sp, sh = traced(image, camid)
    ref = reference_tokens(state, image, camid)
    torch.testing.assert_close(sp, ref[:, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(sh, ref[:, 1], atol=1e-5, rtol=0)

    run = tiny_cfg(
        "train.yaml",
        *TOWER,
        f"init_from={converted}",
        "trainer.max_epochs=1",
        "test=false",
        output_dir=tmp_path / "ft",
    )
    assert "train/loss" in train(run)
    resume = tiny_cfg("train.yaml", *TOWER, f"ckpt_path={converted}", output_dir=tmp_path / "rs")
    with pytest.raises(MDReIDError, match=r"holds weights only.*init_from="):
        train(resume)


def test_convert_cli_refuses_a_contradicting_experiment_in_one_line(tmp_path: Path) -> None:
    path = _saved(tmp_path / "MDReID_RGBNT100.pth", official_state(num_classes=50, num_cameras=8, grid=128))
    env = {**os.environ, "MDREID_VERBOSE": "0", "HYDRA_FULL_ERROR": "0"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mdreid.official",
            "convert",
            str(path),
            str(tmp_path / "o.ckpt"),
            "--experiment",
            "rgbnt201",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {path} does not fit experiment=rgbnt201: 50 identities (the config has 171), "
        "8 cameras (the config has 4); it looks like a RGBNT100 checkpoint: use experiment=rgbnt100"
    )
    assert not (tmp_path / "o.ckpt").exists()


def test_convert_cli_takes_overrides_after_the_options_and_repeats_them_in_its_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As documented: ``convert IN OUT --experiment NAME OVERRIDES...``; the written file is plain data."""
    path = _saved(tmp_path / "official.pth", official_state(num_classes=8, num_cameras=3, grid=8, seed=1))
    out = tmp_path / "converted.ckpt"
    overrides = ["data.image_size=[64,32]", *TOWER]
    assert main(["convert", str(path), str(out), "--experiment", "synthetic", *overrides]) == 0
    printed = capsys.readouterr().out
    assert f"python -m mdreid.eval experiment=synthetic {shlex.join(overrides)} ckpt_path={out}" in printed
    payload = torch.load(out, weights_only=True)  # no allow-list, no trust: tensors and plain values only
    assert payload["converted_from"]["overrides"] == overrides
    assert payload["hyper_parameters"]["backbone"]["vision"]["width"] == 64


def test_convert_reads_the_towers_sizes_from_the_tensors_as_eval_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A non-default tower converts with no size given by hand; a size that contradicts it is one line."""
    state = official_state(num_classes=8, num_cameras=3, grid=8, seed=1)
    path = _saved(tmp_path / "official.pth", state)
    out = tmp_path / "converted.ckpt"
    assert main(["convert", str(path), str(out), "--experiment", "synthetic", "data.image_size=[64,32]"]) == 0
    saved = torch.load(out, weights_only=True)["hyper_parameters"]
    assert saved["backbone"]["vision"] == {
        "width": 64,
        "layers": 2,
        "heads": 1,
        "patch_size": 16,
        "mlp_ratio": 4.0,
    }
    assert saved["backbone"]["embed_dim"] == 32 and saved["image_size"] == [64, 32]
    check_features(load_module(out), state, (64, 32), 3)
    argv = ["convert", str(path), str(out), "--experiment", "synthetic", "model.backbone.vision.layers=3"]
    argv.append("data.image_size=[64,32]")
    assert one_error("official", argv, monkeypatch, capsys) == (
        f"error: the command line contradicts the checkpoint {path}: model.backbone.vision.layers=3 (the "
        "checkpoint has 2); the checkpoint defines the model: drop these overrides"
    )
