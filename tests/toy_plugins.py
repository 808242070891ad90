"""What a user writes outside mdreid's source to extend it (docs/extending.md): a dataset reader and a loss term."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from mdreid.data.readers import load_benchmark, register_reader
from mdreid.data.records import Benchmark
from mdreid.models.net_output import NetOutput


@register_reader("toy_two_cameras")
def read_two_cameras(root: Path, on_missing: str, on_bad_name: str) -> Benchmark:
    """A site that kept only cameras 0 and 1 of an RGBNT201-layout folder."""
    bench = load_benchmark("rgbnt201", root, on_missing, on_bad_name)
    keep = [r for r in bench.train if r.camid < 2]
    labels = {pid: i for i, pid in enumerate(sorted({r.pid for r in keep}))}
    train = [replace(r, label=labels[r.pid]) for r in keep]
    test = [r for r in bench.gallery if r.camid < 2]
    return Benchmark("toy_two_cameras", str(root), train, test, test, junk_rule="camera")


class FeatureNormPenalty:
    """A loss term: the mean squared norm of the specific features, pulled towards ``target``."""

    def __init__(self, target: float = 1.0) -> None:
        self.target = target

    def __call__(self, out: NetOutput, labels: torch.Tensor) -> torch.Tensor:
        return (out.sp.pow(2).sum(-1).mean() - self.target) ** 2
