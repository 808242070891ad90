"""Checking an exported graph against the PyTorch model on real images: the parity report.

Both run the same preprocessed images (evaluation's transform) of a test split, by default the synthetic
RGBNT201 test split of the project's generator at the checkpoint's input size. The exported graph runs in
ONNX Runtime (CPU) or as TorchScript, once per modality, as a deployment would. Reported, for each of the 7
query subsets: the largest absolute difference of the features its pairs read (the subset's modalities,
``sp`` and ``sh``, raw and L2-normalised), and the mAP differences of its 7 pairs; over all 49 pairs, the
largest mAP difference. The report is written next to the exported file (``<file>.parity.json`` / ``.md``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mdreid.data.records import Record
from mdreid.embed.embedder import Embedder
from mdreid.embed.embeddings import Embeddings
from mdreid.embed.sources import RecordImages
from mdreid.export.graph import INPUT_NAMES
from mdreid.files.atomic_io import atomic_write_json, atomic_write_text
from mdreid.metrics.any_to_any_functional import any_to_any_reid
from mdreid.modalities import MODALITIES, NUM_MODALITIES, SUBSETS, subset_indices
from mdreid.process.errors import MDReIDError

Runner = Callable[[np.ndarray, np.ndarray], list[np.ndarray]]  # (image, camid) -> [sp, sh]


def synthetic_test_split(root: Path, seed: int = 0) -> list[Record]:
    """The synthetic RGBNT201 test split written under ``root`` (tiny preset: 8 identities, ~80 triplets,
    every one both query and gallery)."""
    from mdreid.data.readers import load_benchmark
    from mdreid.data.synthetic.generate import generate

    generate("rgbnt201", root, seed=seed, preset="tiny")
    return list(load_benchmark("rgbnt201", root).query)


def runner(path: Path, fmt: str) -> Runner:
    """The exported file as a function of one modality's batch."""
    if fmt == "torchscript":
        module = torch.jit.load(str(path), map_location="cpu").eval()

        def run_script(image: np.ndarray, camid: np.ndarray) -> list[np.ndarray]:
            with torch.inference_mode():
                return [t.numpy() for t in module(torch.from_numpy(image), torch.from_numpy(camid))]

        return run_script
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise MDReIDError("the parity report needs ONNX Runtime: pip install 'mdreid[export]'") from err
    session = ort.InferenceSession(
        str(path), providers=["CPUExecutionProvider"], disabled_optimizers=cpu_fp16_workaround(path)
    )
    wants = {i.name: i.type for i in session.get_inputs()}
    if set(wants) != set(INPUT_NAMES):
        raise MDReIDError(
            f"{path}: inputs {sorted(wants)}, expected {list(INPUT_NAMES)}; export it with mdreid.export"
        )

    def run_onnx(image: np.ndarray, camid: np.ndarray) -> list[np.ndarray]:
        image = image.astype(np.float16) if wants["image"] == "tensor(float16)" else image
        return [np.asarray(o, dtype=np.float32) for o in session.run(None, {"image": image, "camid": camid})]

    return run_onnx


# ONNX Runtime's CPU layout pass (NCHWc, run at the default optimisation level) crashes the process on a
# float16 graph's convolution; the graph runs correctly without it (and on GPU providers, which lack it)
FP16_CPU_DISABLED = ("NchwcTransformer",)


def cpu_fp16_workaround(path: Path) -> list[str]:
    """The ONNX Runtime CPU optimisers to disable for the graph at ``path``: ``FP16_CPU_DISABLED`` if it
    holds float16 weights, none otherwise."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    half = any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    return list(FP16_CPU_DISABLED) if half else []


def exported_features(
    mode: str, run: Runner, batches: Sequence[tuple[dict[str, Tensor], Tensor, Tensor]]
) -> Embeddings:
    """The exported graph's features of collated batches, each modality's present rows run on their own,
    laid out as ``Embedder`` lays out the model's (zeros where absent; a one-output graph's as ``sh``)."""
    parts = []
    for images, present, camid in batches:
        outs: list[Tensor] = []
        for m, key in enumerate(MODALITIES):
            rows = present[:, m]
            if not bool(rows.any()):
                continue
            result = [torch.from_numpy(r) for r in run(images[key][rows].numpy(), camid[rows].numpy())]
            outs = outs or [torch.zeros(len(present), NUM_MODALITIES, r.shape[-1]) for r in result]
            for full, value in zip(outs, result, strict=True):
                full[rows, m] = value
        sp, sh = (outs[0], outs[1]) if len(outs) == 2 else (None, outs[0])
        parts.append(Embeddings(sp, sh, present, camid, mode))
    return Embeddings.cat(parts)


def _unit(x: Tensor) -> Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def compare(reference: Embeddings, exported: Embeddings, pid: Tensor, camid: Tensor) -> dict[str, Any]:
    """Feature and mAP differences per query subset, and over all 49 pairs (see the module docstring)."""
    flags = torch.ones(len(pid), dtype=torch.bool)
    scores = [
        any_to_any_reid(e.sp, e.sh, e.present, pid, camid, flags, flags, similarity=reference.mode).scalars(
            "x"
        )
        for e in (reference, exported)
    ]
    rows = []
    for q in SUBSETS:
        mods = list(subset_indices(q))
        blocks = [
            (a[:, mods], b[:, mods])
            for a, b in ((reference.sp, exported.sp), (reference.sh, exported.sh))
            if a is not None
        ]
        raw = max(float((a - b).abs().max()) for a, b in blocks)
        unit = max(float((_unit(a) - _unit(b)).abs().max()) for a, b in blocks)
        delta = [abs(scores[0][f"x/{q}->{g}/mAP"] - scores[1][f"x/{q}->{g}/mAP"]) for g in SUBSETS]
        rows.append(
            {"query": q, "max_abs_feature": raw, "max_abs_unit_feature": unit, "max_abs_mAP": max(delta)}
        )
    pairs = [k for k in scores[0] if k.count("/") == 2 and k.endswith("/mAP") and "->" in k]
    return {
        "rows": rows,
        "pairs": len(pairs),
        "max_abs_mAP_49": max(abs(scores[0][k] - scores[1][k]) for k in pairs),
        "max_abs_feature": max(r["max_abs_feature"] for r in rows),
        "max_abs_unit_feature": max(r["max_abs_unit_feature"] for r in rows),
        "reference_mAP_RNT": scores[0]["x/RNT->RNT/mAP"],
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Parity of {Path(report['file']).name} ({report['runtime']}, {report['precision']}) with PyTorch",
        "",
        f"{report['items']} triplets of {report['data']}; mAP in points; all 49 pairs: max |ΔmAP| "
        f"{report['max_abs_mAP_49']:.3g}.",
        "",
        "| query subset | max abs feature diff | max abs diff, L2-normalised | max abs mAP diff (7 pairs) |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['query']} | {r['max_abs_feature']:.2e} | {r['max_abs_unit_feature']:.2e} | {r['max_abs_mAP']:.3g} |"
        for r in report["rows"]
    ]
    return "\n".join(lines) + "\n"


def parity_report(
    embedder: Embedder,
    path: Path,
    fmt: str,
    precision: str,
    records: Sequence[Record] | None = None,
    data: str = "",
) -> dict[str, Any]:
    """Compare ``path`` (the exported graph of ``embedder``'s model) with PyTorch on ``records`` (default: the
    synthetic test split); write the report next to ``path`` and return it."""
    if records is None:
        with tempfile.TemporaryDirectory(prefix="mdreid-parity-") as tmp:
            return parity_report(
                embedder,
                path,
                fmt,
                precision,
                synthetic_test_split(Path(tmp)),
                "the synthetic RGBNT201 test split",
            )
    records = list(records)
    # a camera the model has no embedding row for gets none, in both runtimes alike
    camid = torch.tensor([r.camid if r.camid < embedder.num_cameras else -1 for r in records])
    source = RecordImages(records, embedder.rule)  # decoded as evaluation decodes them (stitched strips too)
    batches = []
    for start in range(0, len(records), embedder.batch_size):
        rows = range(start, min(len(records), start + embedder.batch_size))
        tensors = [embedder.preprocess(source.images(i), records[i].name) for i in rows]
        batches.append((*embedder.collate(tensors), camid[rows.start : rows.stop]))
    reference = Embeddings.cat(
        [Embeddings.from_mapping(embedder.embed_batch(*b), embedder.mode) for b in batches]
    )
    exported = exported_features(embedder.mode, runner(path, fmt), batches)
    report = {
        "file": str(path),
        "runtime": "ONNX Runtime (CPU)" if fmt == "onnx" else "TorchScript (CPU)",
        "precision": precision,
        "data": data or f"{len(records)} given triplets",
        "items": len(records),
        **compare(
            reference,
            exported,
            torch.tensor([r.pid for r in records]),
            torch.tensor([r.camid for r in records]),
        ),
    }
    atomic_write_json(Path(f"{path}.parity.json"), report)
    atomic_write_text(Path(f"{path}.parity.md"), markdown(report))
    return report
