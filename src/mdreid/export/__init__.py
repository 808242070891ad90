"""``python -m mdreid.export``: a checkpoint's feature extractor as ONNX or TorchScript (graph), checked against
PyTorch on a test split (parity); cli is the entry point."""

from mdreid.export.cli import export
from mdreid.export.graph import example_inputs, export_extractor

__all__ = ["example_inputs", "export", "export_extractor"]
