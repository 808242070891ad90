"""The exported graph of the per-modality feature extractor: ONNX through the ``torch.export``-based exporter
with a dynamic batch axis, or a TorchScript trace; float16 ONNX on request. Files are written atomically."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from mdreid.files.atomic_io import atomic_write
from mdreid.models.feature_extractor import FeatureExtractor
from mdreid.process.errors import MDReIDError

# format -> default file suffix
FORMATS: dict[str, str] = {"onnx": ".onnx", "torchscript": ".pt"}
INPUT_NAMES: tuple[str, str] = ("image", "camid")

# the exported file goes next to the checkpoint unless out= names it
OUT_ELSEWHERE = "write the file elsewhere with out=FILE"


def example_inputs(
    image_size: tuple[int, int], num_cameras: int, batch_size: int, seed: int
) -> tuple[torch.Tensor, ...]:
    """A seeded ``(image, camid)`` batch to trace with; ``batch_size >= 2`` keeps the batch axis symbolic."""
    if batch_size < 2:
        raise MDReIDError(
            f"batch_size={batch_size}: the example batch needs >= 2 rows so the batch axis stays dynamic"
        )
    gen = torch.Generator().manual_seed(seed)
    image = torch.randn(batch_size, 3, *image_size, generator=gen)
    return image, torch.arange(batch_size, dtype=torch.long) % num_cameras


def _write_onnx(
    extractor: FeatureExtractor, example: tuple[torch.Tensor, ...], out: Path, opset: int
) -> None:
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings():
        # both inputs share the one batch Dim on purpose; the exporter notes it once per axis
        warnings.filterwarnings("ignore", message=r"# The axis name: batch will not be used")
        program = torch.onnx.export(
            extractor,
            example,
            dynamo=True,
            input_names=list(INPUT_NAMES),
            output_names=list(extractor.output_names),
            opset_version=opset,
            dynamic_shapes={name: {0: batch} for name in INPUT_NAMES},
            external_data=False,
            verbose=False,
        )
    atomic_write(out, lambda fh: fh.write(program.model_proto.SerializeToString()), OUT_ELSEWHERE)


def _write_torchscript(extractor: FeatureExtractor, example: tuple[torch.Tensor, ...], out: Path) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r"`torch\.jit\.\w+` is deprecated")
        traced = torch.jit.trace(extractor, example)
        atomic_write(out, lambda fh: torch.jit.save(traced, fh), OUT_ELSEWHERE)


def check_format(fmt: str) -> str:
    """The default file suffix of ``fmt``; an unknown format is a config error listing the valid ones."""
    if fmt not in FORMATS:
        raise MDReIDError(f"format={fmt!r} is not supported; use one of: {', '.join(FORMATS)}")
    return FORMATS[fmt]


def export_extractor(
    extractor: FeatureExtractor, example: tuple[torch.Tensor, ...], out: str | Path, fmt: str, opset: int = 18
) -> Path:
    """Write ``extractor`` (switched to eval mode) as ``fmt`` to ``out``, traced on ``example``.

    Traced without autograd, so the graph is the inference path (attention's fused kernel) and the trace's
    own re-run check sees the same path.
    """
    check_format(fmt)
    out = Path(out)
    extractor.eval()
    with torch.no_grad():
        if fmt == "onnx":
            _write_onnx(extractor, example, out, opset)
        else:
            _write_torchscript(extractor, example, out)
    return out


def describe(extractor: FeatureExtractor, example: tuple[torch.Tensor, ...]) -> list[str]:
    """One line per graph input/output: name, shape with the symbolic batch axis, dtype."""
    with torch.no_grad():
        outputs = extractor(*example)
    rows = [("input", n, t) for n, t in zip(INPUT_NAMES, example, strict=True)]
    rows += [("output", n, t) for n, t in zip(extractor.output_names, outputs, strict=True)]
    return [
        f"  {kind:<6} {name:<5} [{', '.join(['batch', *map(str, t.shape[1:])])}] {str(t.dtype).removeprefix('torch.')}"
        for kind, name, t in rows
    ]


def to_fp16(path: Path) -> None:
    """Rewrite the ONNX file at ``path`` with float16 weights and arithmetic; its inputs and outputs stay
    float32 (``keep_io_types``), so callers feed and read it as before."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(path)), keep_io_types=True)
    _sort_nodes(model.graph)  # the converter appends its input casts after their consumers
    onnx.checker.check_model(model)
    atomic_write(path, lambda fh: fh.write(model.SerializeToString()))


def _sort_nodes(graph: Any) -> None:
    """Order an ONNX graph's nodes so that every node follows the producers of its inputs, as the format
    requires (a stable topological sort)."""
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        waiting = []
        for node in pending:
            if all(name in ready for name in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                waiting.append(node)
        if len(waiting) == len(pending):
            raise MDReIDError(
                f"the float16 graph has nodes whose inputs are never produced: {waiting[0].name}"
            )
        pending = waiting
    del graph.node[:]
    graph.node.extend(ordered)
