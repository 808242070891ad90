"""Export entry point: ``python -m mdreid.export ckpt_path=PATH format=onnx|torchscript [out=FILE] [fp16=true]``.

Writes the per-modality feature extractor (:class:`~mdreid.models.feature_extractor.FeatureExtractor`):
inputs ``image [batch,3,H,W]`` float32 (one modality's images, normalised as in evaluation) and ``camid
[batch]`` int64; outputs ``sp`` and ``sh`` ``[batch,D]`` float32, the pre-BN specific and shared features
(the single-token baseline has ``sp`` only). R, N and T go through the same shared encoder, so ONE exported
graph serves every modality: run it once per modality and score the features as ``AnyToAnyReID`` does.

The model is rebuilt from the checkpoint alone (its saved hyper-parameters, or an official MDReID ``.pth``'s
tensor shapes), so no experiment is needed.
``out`` defaults to the checkpoint's path with ``.onnx`` / ``.pt``. ONNX uses the ``torch.export``-based
exporter with a dynamic batch axis; TorchScript is a trace (torch marks TorchScript deprecated, ONNX is the
format to prefer). Files are written atomically. ``fp16=true`` converts the ONNX graph to float16 (inputs and
outputs stay float32). ``parity=true`` (the default) then runs the written file against PyTorch on a test
split and writes the report next to it (``mdreid.export_parity``).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig

from mdreid.config.cli_overrides import checked_overrides
from mdreid.config.location import config_dir
from mdreid.config.run import RunConfig
from mdreid.files.atomic_io import atomic_write
from mdreid.models.feature_extractor import FeatureExtractor
from mdreid.process.errors import MDReIDError, cli_errors
from mdreid.process.output_dir import keep_caches_in

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


def export(cfg: DictConfig) -> Path:
    """Rebuild the model from ``cfg.ckpt_path``, write its feature extractor, print the file and its I/O."""
    run = RunConfig.parse(cfg)
    fmt, fp16, parity = str(run.format), run.fp16, run.parity
    suffix = check_format(fmt)
    if fp16 and fmt != "onnx":
        raise MDReIDError(f"fp16=true converts ONNX graphs; use format=onnx (got format={fmt})")
    if run.paths is not None:  # a CLI run; a config built in code may name no run folder
        keep_caches_in(run.paths.output_dir)
    from mdreid.checkpoint import resolve_checkpoint
    from mdreid.factory import (
        load_module,  # imports Lightning, hence matplotlib: after the line above
    )

    ckpt = resolve_checkpoint(run.ckpt_path, trust=run.trust_checkpoint)
    module = load_module(ckpt, image_size=run.image_size)
    out = Path(run.out) if run.out else Path(run.ckpt_path).with_suffix((".fp16" if fp16 else "") + suffix)
    example = example_inputs(tuple(module.hparams["image_size"]), ckpt.cameras, run.batch_size, run.seed or 0)
    extractor = FeatureExtractor(module.net)
    export_extractor(extractor, example, out, fmt, run.opset)
    if fp16:
        to_fp16(out)
    opset = f", opset {run.opset}" if fmt == "onnx" else ""
    precision = "fp16" if fp16 else "fp32"
    print(f"wrote {out} ({fmt}{opset}{', fp16' if fp16 else ''})")
    print("\n".join(describe(extractor, example)))
    print("one graph serves every modality (R, N, T): feed one modality's images with their camera ids")
    if parity:
        from mdreid.embed.embedder import Embedder
        from mdreid.export_parity import parity_report

        report = parity_report(Embedder(module, ckpt.image_rule, device="cpu"), out, fmt, precision)
        print(
            f"parity with PyTorch on {report['data']}: max |feature diff| {report['max_abs_feature']:.2e} "
            f"(L2-normalised {report['max_abs_unit_feature']:.2e}), max |mAP diff| over {report['pairs']} pairs "
            f"{report['max_abs_mAP_49']:.3g}; report: {out}.parity.md"
        )
    return out


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


@checked_overrides("export.yaml")
@hydra.main(version_base="1.3", config_path=config_dir(), config_name="export.yaml")
@cli_errors
def main(cfg: DictConfig) -> None:
    export(cfg)


if __name__ == "__main__":
    main()
