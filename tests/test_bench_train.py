"""The FLOP count behind MFU, and scripts/bench_train.py end to end (tiny config, no timing asserts)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from analysis import train_bench
from analysis.flops import analytic_train_flops, count_flops
from analysis.train_bench import PRESETS, model_device
from conftest import compose_cfg
from mdreid.losses.objective import MDReIDObjective
from mdreid.models.mdreid_net import MDReIDNet
from mdreid.process.errors import MDReIDError

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_train.py"


# tiny towers: (backbone section, tokens in the blocks besides the patches, matmul weights per block, projection
# width or None); the hand count below knows each architecture, the analytic rule none
WIDTH, LAYERS, PATCH, DIM = 64, 2, 8, 32
TIMM_ARGS = {"depth": LAYERS, "embed_dim": WIDTH, "num_heads": 2, "patch_size": PATCH}
VISION = {"width": WIDTH, "layers": LAYERS, "heads": 2, "patch_size": PATCH}
TIMM = "timm"
SWIGLU_HIDDEN = int(WIDTH * 4 * 2 / 3)  # EVA-02's gated MLP: fc1_g and fc1_x W -> hidden, fc2 hidden -> W
HAND_COUNTED = {
    # qkv 3W^2, out W^2, MLP 2 x 4W^2; specific + shared token
    "open_clip": (
        {"name": "ViT-B-16", "weights": None, "embed_dim": DIM, "vision": VISION},
        2,
        12 * WIDTH**2,
        DIM,
    ),
    "dinov2_reg": (
        {"tower": TIMM, "name": "vit_base_patch14_reg4_dinov2", "model_args": TIMM_ARGS},
        2 + 4,  # the MDL tokens, then 4 registers
        12 * WIDTH**2,
        None,
    ),
    "eva02": (
        {"tower": TIMM, "name": "eva02_base_patch14_224", "model_args": TIMM_ARGS},
        2,
        4 * WIDTH**2 + 3 * WIDTH * SWIGLU_HIDDEN,
        None,
    ),
}


@pytest.mark.parametrize("tower", sorted(HAND_COUNTED))
def test_counted_training_flops_match_an_independent_matmul_count(tower: str) -> None:
    """Forward + backward of net and objective against a by-hand count of every tower and head matmul.

    Torch's conventions: 2 FLOPs per multiply-add; backward = grad-input + grad-weight (2x forward), except
    the patch embedding, whose input needs no gradient (weight gradient only); attention backward is 5 score-
    sized products (the scores are recomputed) against 2 forward. The losses' few small products are left out.
    Registers (DINOv2-reg) lengthen the sequence; EVA-02's gated MLP has three matrices of 2/3 the width.
    """
    section, extra_tokens, block_weights, proj = HAND_COUNTED[tower]
    b, classes, (h, w) = 4, 10, (64, 32)
    torch.manual_seed(0)
    net = MDReIDNet(section, num_classes=classes, num_cameras=2, image_size=(h, w))
    objective = MDReIDObjective()
    images = {m: torch.randn(b, 3, h, w) for m in ("RGB", "NI", "TI")}
    present = torch.ones(b, 3, dtype=torch.bool)
    camid = torch.zeros(b, dtype=torch.long)
    labels = torch.tensor([0, 0, 1, 1])

    def step() -> None:
        objective(net(images, present, camid), labels)["loss"].backward()

    counted = count_flops(step)

    n, patches = 3 * b, (h // PATCH) * (w // PATCH)
    tokens = extra_tokens + patches
    dim = proj or WIDTH
    conv = 2 * n * patches * (3 * PATCH * PATCH * WIDTH) * 2  # forward + weight gradient
    blocks = 3 * 2 * n * tokens * LAYERS * block_weights
    attention = (2 + 5) * 2 * n * tokens * tokens * WIDTH * LAYERS
    projection = 3 * 2 * n * 2 * WIDTH * proj if proj else 0  # on the two prefix tokens only
    heads = 3 * 2 * b * (3 * dim * classes + 3 * dim * classes)  # 3 specific heads + the shared one
    by_hand = conv + blocks + attention + projection + heads

    assert 1.0 <= counted / by_hand < 1.01  # a dropped backward (1/3), attention (-15%) or register fails
    analytic = analytic_train_flops(net, b, (h, w))
    assert analytic.tower.tokens == tokens and analytic.tower.attention_layers == LAYERS
    assert analytic.tower.block_weights == LAYERS * block_weights
    assert counted / analytic.train == pytest.approx(1.0, abs=0.05)


def test_script_runs_end_to_end_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = [
        "--preset=tiny-cpu",
        "--warmup=1",
        "--steps=2",
        "--batch=8",
        "--pipeline-samples=8",
        "--synth-preset=tiny",
        "--workers=1",
        f"--data-root={tmp_path / 'data'}",
        f"--profile={tmp_path / 'profile'}",
        "--profile-steps=1",
        f"--json={out}",
        "data.synth.ids=6",
        "data.val=none",  # 6 synthetic identities: too few to hold out a validation split
    ]
    run = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"wrote {out}" in run.stdout
    report = json.loads(out.read_text())

    assert report["preset"] == "tiny-cpu" and report["machine"]["cores"] >= 1 and report["machine"]["date"]
    model = report["model"]
    assert model["images_per_step"] == 24 and model["timed_steps"] == 2
    for key in (
        "step_s_mean",
        "step_s_median",
        "images_per_s",
        "achieved_tflops",
        "fraction_of_measured_gemm",
    ):
        assert model[key] > 0, key
    assert model["peak_memory"]["bytes"] >= 0  # a rise of the process's peak RSS: 0 if it peaked earlier
    assert model["flops"]["counted_per_step"] > 0
    assert model["flops"]["counted_over_analytic"] == pytest.approx(1.0, abs=0.05)
    assert model["gemm"]["measured_tflops"] > 0 and model["mfu"] is None  # no peak given on CPU
    assert (tmp_path / "profile" / "ops.txt").is_file()
    # all-present batches take the fast path: no boolean-mask indexing (each nonzero is a GPU sync)
    assert model["profile"]["nonzero_per_step"] == 0 and model["profile"]["scalar_reads_per_step"] > 0

    pipeline = report["pipeline"]
    assert pipeline["in_process_one_thread"]["triplets_per_s"] > 0
    assert pipeline["in_process_one_thread"]["decode_ms_per_triplet"] > 0
    assert pipeline["dataloaders"][0]["workers"] == 1 and pipeline["dataloaders"][0]["triplets_per_s"] > 0
    assert pipeline["keep_up"]["checks"] == {}  # a CPU model, no peak: nothing to check against


def bench_script():  # noqa: ANN201 - the script module, loaded as its own file is
    spec = importlib.util.spec_from_file_location("bench_train_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_towers_side_by_side_in_rounds_and_counted_without_a_trainer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--backbone twice, --rounds 2: each tower timed once per round, its own shape and FLOPs (registers make
    DINOv2-reg's sequence 4 tokens longer); --flops-only gives the same counted FLOPs with no trainer."""
    script = bench_script()
    monkeypatch.setattr(train_bench, "gemm_tflops", lambda *_: 1.0)  # the GEMM probe: see the test above
    common = ["--preset=tiny-cpu", "--skip-pipeline", "--batch=4", f"--data-root={tmp_path / 'data'}"]
    towers = ["--backbone", "tiny", "--backbone", "tiny_dinov2_reg model.backbone.weights=null"]
    small = ["data.num_instances=2", "data.image_size=[64,32]"]
    timed = script.main([*common, "--warmup=1", "--steps=1", "--rounds=2", *towers, *small])["towers"]
    counted = script.main([*common, "--flops-only", *towers, *small])["towers"]
    reg = "tiny_dinov2_reg model.backbone.weights=null"
    assert list(timed) == list(counted) == ["tiny", reg]
    assert (
        timed["tiny"]["backbone"]["tower"] == "OpenCLIPTower"
        and timed[reg]["backbone"]["tower"] == "TimmTower"
    )
    assert timed["tiny"]["backbone"]["tokens_per_image"] == 2 + 8 * 4
    assert timed[reg]["backbone"]["tokens_per_image"] == 2 + 4 + 8 * 4
    for name, row in timed.items():
        assert (
            len(row["images_per_s_rounds"]) == 2
            and row["images_per_s_best"] >= row["images_per_s_median"] > 0
        )
        assert row["flops"]["counted_per_step"] == counted[name]["flops"]["counted_per_step"], name
        assert counted[name]["flops"]["counted_over_analytic"] == pytest.approx(1.0, abs=0.05)
    assert timed[reg]["flops"]["counted_per_step"] > timed["tiny"]["flops"]["counted_per_step"]
    assert "best / median of 2 rounds" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        script.main(["--flops-only"])  # no towers named
    assert "--flops-only and --rounds compare towers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        script.main(["--backbone", "model.backbone.weights=null"])
    assert "start with a model/backbone config name" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_gpu_preset_without_cuda_names_the_cpu_ways_out() -> None:
    cfg = compose_cfg("train.yaml", PRESETS["vitb16-gpu"])
    with pytest.raises(MDReIDError, match=r"^--preset vitb16-gpu .*--skip-model"):
        model_device(cfg, "vitb16-gpu")
