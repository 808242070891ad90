"""Saved any-to-any features: the file format ``mdreid.eval eval.save_features=true`` writes and ``mdreid.score``
reads, open to any method's features (docs/feature_files.md)."""

from mdreid.feature_file.read import read_feature_file
from mdreid.feature_file.schema import FORMAT, FeatureSet
from mdreid.feature_file.write import write_feature_file

__all__ = ["FORMAT", "FeatureSet", "read_feature_file", "write_feature_file"]
