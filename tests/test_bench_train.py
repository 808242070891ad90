"""The FLOP count behind MFU, and scripts/bench_train.py end to end (tiny config, no timing asserts)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import compose_cfg
from mdreid.analysis.flops import analytic_train_flops, count_flops
from mdreid.analysis.train_bench import PRESETS, model_device
from mdreid.losses.objective import MDReIDObjective
from mdreid.models.mdreid_net import MDReIDNet
from mdreid.runtime.errors import MDReIDError

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_train.py"


def test_counted_training_flops_match_an_independent_matmul_count() -> None:
    """Forward + backward of net and objective against a by-hand count of every encoder and head matmul.

    Torch's conventions: 2 FLOPs per multiply-add; backward = grad-input + grad-weight (2x forward), except
    the patch embedding, whose input needs no gradient (weight gradient only); attention backward is 5 score-
    sized products (the scores are recomputed) against 2 forward. The losses' few small products are left out.
    """
    b, width, layers, patch, dim, classes, (h, w) = 4, 64, 2, 8, 32, 10, (64, 32)
    torch.manual_seed(0)
    vision = {"width": width, "layers": layers, "heads": 2, "patch_size": patch}
    backbone = {"name": "ViT-B-16", "weights": None, "embed_dim": dim, "vision": vision}
    net = MDReIDNet(backbone, num_classes=classes, num_cameras=2, image_size=(h, w))
    objective = MDReIDObjective()
    images = {m: torch.randn(b, 3, h, w) for m in ("RGB", "NI", "TI")}
    present = torch.ones(b, 3, dtype=torch.bool)
    camid = torch.zeros(b, dtype=torch.long)
    labels = torch.tensor([0, 0, 1, 1])

    def step() -> None:
        objective(net(images, present, camid), labels)["loss"].backward()

    counted = count_flops(step)

    n, patches = 3 * b, (h // patch) * (w // patch)
    tokens = 2 + patches  # specific + shared token, then the patches
    conv = 2 * n * patches * (3 * patch * patch * width) * 2  # forward + weight gradient
    blocks = 3 * 2 * n * tokens * layers * (4 * width * width + 2 * width * 4 * width)
    attention = (2 + 5) * 2 * n * tokens * tokens * width * layers
    proj = 3 * 2 * n * 2 * width * dim  # ln_post @ proj on the two prefix tokens only
    heads = 3 * 2 * b * (3 * dim * classes + 3 * dim * classes)  # 3 specific heads + the shared one
    by_hand = conv + blocks + attention + proj + heads

    assert 1.0 <= counted / by_hand < 1.01  # a dropped backward (1/3) or attention (-15%) fails
    assert counted / analytic_train_flops(net, b).train == pytest.approx(1.0, abs=0.05)


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


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_gpu_preset_without_cuda_names_the_cpu_ways_out() -> None:
    cfg = compose_cfg("train.yaml", PRESETS["vitb16-gpu"])
    with pytest.raises(MDReIDError, match=r"^--preset vitb16-gpu .*--skip-model"):
        model_device(cfg, "vitb16-gpu")
