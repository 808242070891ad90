"""The tracker backend meets boxmot's appearance contract and uses the modalities a frame has."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import TINY_OVERRIDES, compose_cfg
from mdreid.data.synthetic.video import VideoSpec, boxes, frames
from mdreid.embed.embedder import Embedder
from mdreid.embed.tracker import MultiSpectralBackend, shared_vectors
from mdreid.factory import build_module
from mdreid.process.errors import MDReIDError


def test_get_features_contract_and_the_present_subset() -> None:
    torch.manual_seed(0)
    module = build_module(
        compose_cfg("train.yaml", TINY_OVERRIDES),
        SimpleNamespace(num_classes=4, num_cameras=2, junk_rule="camera"),
    )
    embedder = Embedder(module, device="cpu")
    backend = MultiSpectralBackend(embedder, camid=1)
    spec = VideoSpec(ids=2, frames=6, night=(4, 6))
    video = dict(frames(spec))
    day, night = video[2], video[5]
    xyxy = [[b.left, b.top, b.left + 32, b.top + 64] for b in boxes(spec) if b.frame == 2]
    both = backend.get_features(xyxy, dict(zip(("rgb", "nir", "tir"), day, strict=True)))
    assert both.shape == (len(xyxy), backend.dim) and both.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(both, axis=1), 1.0, atol=1e-5)
    crops = [[im[b : b + 64, a : a + 32] for im in day] for a, b, _, _ in xyxy]
    ref = embedder.embed(*zip(*crops, strict=True), camid=1)
    np.testing.assert_allclose(both, shared_vectors(ref.sh, ref.present).numpy(), atol=1e-6)
    # at night RGB is missing: N and T serve, and the vector is still a unit row of the same space
    dark = backend.get_features(xyxy, {"rgb": None, "nir": night[1], "tir": night[2]})
    np.testing.assert_allclose(np.linalg.norm(dark, axis=1), 1.0, atol=1e-5)
    # one BGR frame (boxmot's call) is the RGB camera's; an RGB-only backend has nothing at night
    rgb_only = MultiSpectralBackend(embedder, modalities=("rgb",), camid=1)
    bgr = rgb_only.get_features(np.array(xyxy, dtype=np.float32), day[0][..., ::-1])
    assert np.array_equal(bgr, rgb_only.get_features(xyxy, {"rgb": day[0]}))
    assert not rgb_only.get_features(xyxy, {"rgb": None, "nir": night[1]}).any()
    assert backend.get_features(np.zeros((0, 4)), {"tir": night[2]}).shape == (0, backend.dim)
    with pytest.raises(MDReIDError, match="has no pixels inside the 192x96 frame"):
        backend.get_features([[500, 10, 520, 40]], {"tir": night[2]})
