"""What made an index's features, recorded in ``index.json`` and checked before anything is added or searched.

A checkpoint path alone does not name a model: a resumed or new training rewrites ``last.ckpt`` in place,
and an index would then mix two models' features without a sign. So the index records the checkpoint's
sha256, its architecture and the feature size; an index built from a feature file (another method's
features, no checkpoint) records the file's sha256, its producer (``method``, ``dataset``) and the feature
size, and takes queries and new items only from a feature file of the same producer and size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mdreid.files.file_hash import sha256
from mdreid.process.errors import MDReIDError

CHECKPOINT, FEATURES = "checkpoint", "features"


def checkpoint_identity(path: str | Path, model: Any, feature_dim: int) -> dict[str, Any]:
    """The record of a checkpoint's model: its file, sha256, architecture and feature size."""
    backbone = dict(model.hparams.get("backbone") or {})
    return {
        "source": CHECKPOINT,
        "checkpoint": str(Path(path).absolute()),
        "sha256": sha256(path),
        "architecture": f"{type(model.net).__name__} ({backbone.get('name', 'own tower')})",
        "feature_dim": int(feature_dim),
    }


def features_identity(path: str | Path, features: Any, feature_dim: int) -> dict[str, Any]:
    """The record of a feature file's producer: its file, sha256, method, dataset and feature size."""
    return {
        "source": FEATURES,
        "file": str(Path(path).absolute()),
        "sha256": sha256(path),
        "method": features.method,
        "dataset": features.dataset,
        "feature_dim": int(feature_dim),
    }


def _describe(record: dict[str, Any]) -> str:
    if record["source"] == CHECKPOINT:
        return f"{record['architecture']}, features of size {record['feature_dim']}, sha256 {record['sha256'][:12]}"
    method = record.get("method") or "an unnamed method"
    return f"features of {method} of size {record['feature_dim']} ({record.get('dataset') or 'no dataset named'})"


def verify_checkpoint(model_record: dict[str, Any], index: Path) -> str:
    """The index's checkpoint path, if that file is still the one the index was built from."""
    if model_record.get("source") != CHECKPOINT:
        raise MDReIDError(
            f"{index} was built from a feature file ({_describe(model_record)}); give queries and new items "
            "as a feature file of the same producer: --features FILE"
        )
    path = Path(model_record["checkpoint"])
    if not path.is_file():
        raise MDReIDError(
            f"{index} was built with {path}, which no longer exists; restore it or rebuild the index "
            f"(python -m mdreid.index build)"
        )
    now = sha256(path)
    if now != model_record["sha256"]:
        raise MDReIDError(
            f"{index} was built with {path} (sha256 {model_record['sha256'][:12]}), but that file now holds "
            f"another model (sha256 {now[:12]}; rewritten by a resumed or new training?); features of two "
            "models would be mixed: rebuild the index from the file as it is now (python -m mdreid.index build "
            "NEW_INDEX --ckpt ...), or use a copy of the original checkpoint"
        )
    return str(path)


def verify_same_model(model_record: dict[str, Any], index: Path, checkpoint: str | Path, digest: str) -> None:
    """Refuse an index whose features were not made by ``checkpoint`` (sha256 ``digest``), whatever its path."""
    if model_record.get("source") != CHECKPOINT:
        raise MDReIDError(
            f"{index} was built from a feature file ({_describe(model_record)}), not by a model; search it with "
            "python -m mdreid.index search --features FILE"
        )
    if model_record["sha256"] != digest:
        raise MDReIDError(
            f"{index} was built with another model ({_describe(model_record)}, from {model_record['checkpoint']}) "
            f"than {checkpoint} (sha256 {digest[:12]}); open an index built with this model, or start the page "
            "on that index without --ckpt"
        )


def verify_features(
    model_record: dict[str, Any], index: Path, path: str | Path, record: dict[str, Any]
) -> None:
    """Refuse a feature file whose producer or feature size is not the index's."""
    if model_record.get("source") != FEATURES:
        raise MDReIDError(
            f"{index} was built from a checkpoint ({_describe(model_record)}); give images (the index extracts "
            "their features with its checkpoint), not --features"
        )
    if (record["method"], record["feature_dim"]) != (model_record.get("method"), model_record["feature_dim"]):
        raise MDReIDError(
            f"{path} holds {_describe(record)}, the index {index} {_describe(model_record)}; features of two "
            "producers would be mixed: use a file of the index's producer, or build another index"
        )
