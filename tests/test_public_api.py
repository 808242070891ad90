"""The curated public API: every exported name resolves, importing the package loads nothing heavy, and the
functional metric gives the class's numbers."""

from __future__ import annotations

import subprocess
import sys

import torch

import mdreid
from mdreid import AnyToAnyReID, any_to_any_reid
from samples import make_samples


def test_every_public_name_resolves() -> None:
    for name in mdreid.__all__:
        assert getattr(mdreid, name) is not None, name


def test_importing_the_package_loads_neither_torch_nor_lightning() -> None:
    """``python -m mdreid.<entry> --help`` imports the package first: it must stay light."""
    code = "import sys, mdreid; print(sorted({'torch', 'lightning'} & set(sys.modules)))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.stdout.strip() == "[]", run.stderr[-2000:]


def test_functional_metric_equals_the_class_over_batches() -> None:
    s = make_samples(seed=3, n=20)
    s["present"][::3, 1] = False  # some samples without NIR
    functional = any_to_any_reid(
        s["sp"], s["sh"], s["present"], s["pid"], s["camid"], s["is_query"], s["is_gallery"], s["sceneid"]
    )
    metric = AnyToAnyReID()
    for rows in (torch.arange(0, 9), torch.arange(9, 20)):  # two batches, in another order than the samples
        metric.update(**{k: v[rows] for k, v in s.items()})
    assert functional.scalars("x") == metric.compute().scalars("x")
    assert len([k for k in functional.scalars("x") if k.endswith("/mAP")]) >= 49
