"""Why does the Grad-CAM sanity check (scripts/cam_sanity.py) fail? Diagnostics on its trained model and data,
for the trained model and the random-init control, over one half of the test identities:

    python scripts/cam_diagnostics.py --sanity outputs/cam_sanity --identities even   # where variants are compared
    python scripts/cam_diagnostics.py --sanity outputs/cam_sanity --identities odd    # held out, to confirm

For each query's best-ranked true match (RNT->RNT, code rule) and each query modality, per feature (sh, sp):

* box mass of Grad-CAM (channel weights = the gradient's mean over patches) and of HiResCAM (gradient times
  activation per patch) on the first norm of every block (gc0..gc3, hr0..hr3) and their block average (maps
  scaled to [0, 1] per block, averaged, rescaled: the package's multi-layer rule); one backward pass gives all
  blocks, so the formulas are applied here to the hooked tokens rather than through the package (its
  Grad-CAM on the last block is what ``mdreid.explain`` draws);
* occlusion: the score drop when the cue box is filled with the mean colour (0 after normalisation) in that
  modality, against a same-size 4x4-patch region elsewhere (does the model use the box?);
* deletion: the score drop when each map's 16 most salient patches (the box's patch count) are filled,
  against 16 random patches (is the map faithful to the model?), and the share of those 16 inside the box.

Prints a JSON summary (mean and median per key) and writes it to SANITY/diagnostics_<identities>.json.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from functools import partial
from pathlib import Path

import numpy as np
import torch

from cam_sanity import best_matches  # this folder is on the path when a script here runs

VARIANTS = ("gc3", "gc2", "hr3", "hr2", "hravg", "gcavg")  # the maps whose top patches are deleted
TOP = 16  # the box's patch count on the 16x8 grid


def _hooks(blocks, acts: dict, grads: dict) -> list:
    def hook(i):
        def save(module, inputs, out):
            acts[i] = out
            if out.requires_grad:
                out.register_hook(lambda g: grads.__setitem__(i, g))

        return save

    return [b.ln_1.register_forward_hook(hook(i)) for i, b in enumerate(blocks)]


def _drop(target, encoder, image: torch.Tensor, base: float, patch: int, mask: np.ndarray) -> float:
    """The score lost when the patches of ``mask`` are filled with the mean colour (0 once normalised)."""
    pixels = torch.from_numpy(np.kron(mask, np.ones((patch, patch)))).bool()
    filled = image.clone()
    filled[:, pixels] = 0
    with torch.no_grad():
        return base - float(target(encoder(filled[None])[0]))


def diagnose(model, benchmark, identities: str, rng: np.random.Generator) -> dict:
    from pytorch_grad_cam.utils.image import scale_cam_image

    from mdreid.explain.cam import _OneModality, patch_grid, similarity_target
    from mdreid.explain.explainer import Explainer, _side
    from mdreid.explain.sanity import box_mass

    explainer = Explainer(model)
    net = explainer.net
    blocks = net.mdl.encoder.transformer.resblocks
    acts: dict = {}
    grads: dict = {}
    handles = _hooks(blocks, acts, grads)
    image = explainer._inputs(next(iter(benchmark.query)), "R")[0][0]
    rows, cols = patch_grid(net, image)
    patch = image.shape[-1] // cols
    size = (image.shape[-1], image.shape[-2])  # the map's (width, height), as the package resizes it
    box = np.zeros((rows, cols), bool)
    box[rows // 8 : 3 * rows // 8, cols // 4 : 3 * cols // 4] = True
    parity = {"even": 0, "odd": 1}.get(identities)
    found: dict[str, dict[str, list[float]]] = {f: defaultdict(list) for f in ("sh", "sp")}
    for query, _, (q_row, g_row) in best_matches(explainer, benchmark, parity):
        q, g = _side(q_row, 0, "RNT"), _side(g_row, 0, "RNT")
        inputs = explainer._inputs(query, "RNT")
        encoder = _OneModality(net, query.camid)
        for feature, out in found.items():
            for m, (x, _) in inputs.items():
                target = similarity_target(net, q, g, ("RNT", "RNT"), "code", "query", m, feature)
                with torch.enable_grad():
                    score = target(encoder(x[None].detach().clone().requires_grad_(True))[0])
                    score.backward()
                base = float(score.detach())
                maps = {"gc": [], "hr": []}
                for b in range(len(blocks)):
                    a, grad = acts[b][0, -rows * cols :].detach(), grads[b][0, -rows * cols :].detach()
                    maps["gc"].append(torch.relu((a * grad.mean(0)).sum(-1)).reshape(rows, cols).numpy())
                    maps["hr"].append(torch.relu((a * grad).sum(-1)).reshape(rows, cols).numpy())
                for kind, per_block in maps.items():
                    for b, cam in enumerate(per_block):
                        if cam.max() > 0:
                            out[f"{kind}{b}"].append(box_mass(scale_cam_image(cam[None], size)[0]))
                    scaled = np.stack([scale_cam_image(c[None], size)[0] for c in per_block])
                    average = scale_cam_image(np.maximum(scaled, 0).mean(0)[None])[0]
                    if average.sum() > 0:
                        out[f"{kind}avg"].append(box_mass(average))
                drop = partial(_drop, target, encoder, x, base, patch)

                out["occ_box"].append(drop(box))
                while True:
                    top, left = rng.integers(0, rows - 3), rng.integers(0, cols - 3)
                    region = np.zeros((rows, cols), bool)
                    region[top : top + 4, left : left + 4] = True
                    if not (region & box).any():
                        break
                out["occ_rand"].append(drop(region))
                salient = {
                    "gc3": maps["gc"][3],
                    "gc2": maps["gc"][2],
                    "hr3": maps["hr"][3],
                    "hr2": maps["hr"][2],
                    "hravg": np.mean([h / (h.max() + 1e-30) for h in maps["hr"]], 0),
                    "gcavg": np.mean([h / (h.max() + 1e-30) for h in maps["gc"]], 0),
                }
                for name in VARIANTS:
                    chosen = np.zeros(rows * cols, bool)
                    chosen[np.argsort(-salient[name].ravel(), kind="stable")[:TOP]] = True
                    chosen = chosen.reshape(rows, cols)
                    out[f"del_{name}"].append(drop(chosen))
                    out[f"in_{name}"].append((chosen & box).sum() / TOP)
                random_patches = np.zeros(rows * cols, bool)
                random_patches[rng.choice(rows * cols, TOP, replace=False)] = True
                out["del_rand"].append(drop(random_patches.reshape(rows, cols)))
    for h in handles:
        h.remove()
    return {
        f: {k: {"mean": float(np.mean(v)), "median": float(np.median(v)), "n": len(v)} for k, v in d.items()}
        for f, d in found.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sanity", default="outputs/cam_sanity", help="cam_sanity.py's --out (data, train)")
    parser.add_argument("--identities", choices=("even", "odd", "all"), default="all")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(args.sanity).resolve()

    from mdreid.data.readers import load_benchmark
    from mdreid.factory import load_module
    from mdreid.module import ReIDModule

    trained = load_module(root / "train" / "checkpoints" / "last.ckpt")
    torch.manual_seed(0)  # the same random control as cam_sanity.py
    random = ReIDModule.from_config(
        {**trained.hparams, "backbone": {**trained.hparams["backbone"], "weights": None}}
    ).eval()
    benchmark = load_benchmark("rgbnt201", str(root / "data"))
    rng = np.random.default_rng(0)
    summary = {"identities": args.identities}
    for name, model in (("trained", trained), ("random", random)):
        summary[name] = diagnose(model, benchmark, args.identities, rng)
    text = json.dumps(summary, indent=1)
    (root / f"diagnostics_{args.identities}.json").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
