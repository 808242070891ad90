"""Writing a feature file: safetensors, atomically (a crash never leaves half a file under the final name)."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import save

from mdreid.feature_file.schema import FeatureSet
from mdreid.files.atomic_io import atomic_write
from mdreid.process.errors import MDReIDError


def write_feature_file(path: str | Path, features: FeatureSet) -> Path:
    """``features`` as a ``.safetensors`` file at ``path`` (tensors plus the text values as its metadata)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise MDReIDError(f"{path}: feature files are written as .safetensors")
    data = save(features.tensors(), metadata=features.metadata())
    return atomic_write(path, lambda fh: fh.write(data))
