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
split and writes the report next to it (``mdreid.export.parity``).
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from mdreid.config.cli_overrides import checked_overrides
from mdreid.config.location import config_dir
from mdreid.config.run import RunConfig
from mdreid.export.graph import check_format, describe, example_inputs, export_extractor, to_fp16
from mdreid.models.feature_extractor import FeatureExtractor
from mdreid.process.errors import MDReIDError, cli_errors
from mdreid.process.output_dir import keep_caches_in


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
        from mdreid.export.parity import parity_report

        report = parity_report(Embedder(module, ckpt.image_rule, device="cpu"), out, fmt, precision)
        print(
            f"parity with PyTorch on {report['data']}: max |feature diff| {report['max_abs_feature']:.2e} "
            f"(L2-normalised {report['max_abs_unit_feature']:.2e}), max |mAP diff| over {report['pairs']} pairs "
            f"{report['max_abs_mAP_49']:.3g}; report: {out}.parity.md"
        )
    return out


@checked_overrides("export.yaml")
@hydra.main(version_base="1.3", config_path=config_dir(), config_name="export.yaml")
@cli_errors
def main(cfg: DictConfig) -> None:
    export(cfg)
