"""Grad-CAM of one modality's image through the shared MDL encoder, with the ``grad-cam`` package.

Each modality is encoded on its own (``MDLEncoder`` sees one image and its camera), so the model Grad-CAM
drives has one 4-D input: the encoder with the camera fixed, returning the image's tokens ``[N, T, D]``
(token 0 specific, token 1 shared; the baseline's one token). The maps come from the input of the last
block's attention (its first norm): the features are read from the prefix tokens, which do not depend on the
*final* patch tokens, so a hook after the blocks would see zero gradients. The prefix tokens (class token
with the camera embedding, the shared token, any a tower adds) are dropped and the patch tokens reshaped to
the tower's grid, which is as wide and tall as the image's patches (2:1 for persons, 1:2 for vehicles).

A target maps the tokens of the explained image to a scalar: the similarity of a match
(``similarity_target``) or an identity's logit (``identity_target``), through the specific or the shared
feature; the other feature stays fixed at its value, so the map shows what the chosen feature looked at.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from mdreid.explain.shares import Side
from mdreid.index.pair_vectors import pair_vectors
from mdreid.models.mdreid_net import MDReIDNet, fill_absent_with_mean
from mdreid.process.errors import MDReIDError

FEATURES: tuple[str, ...] = ("sp", "sh")
TARGET_MODES: tuple[str, ...] = ("code", "paper")  # the similarity rules ``pair_vectors`` factors
Target = Callable[[Tensor], Tensor]  # tokens [T, D] of one image -> a scalar to explain


def cam_layer(tower: nn.Module) -> nn.Module:
    """The module whose output (all tokens, batch first) the maps are computed on: a tower's own
    ``cam_layer`` when it names one, else the first norm of the last block of open_clip or timm ViTs."""
    own = getattr(tower, "cam_layer", None)
    if isinstance(own, nn.Module):
        return own
    blocks = getattr(getattr(tower, "transformer", None), "resblocks", None)  # open_clip
    if blocks is not None:
        return blocks[-1].ln_1
    blocks = getattr(tower, "blocks", None)  # timm
    if blocks is not None:
        return blocks[-1].norm1
    raise MDReIDError(
        f"Grad-CAM: the tower {type(tower).__name__} has no known last block; give it a `cam_layer` "
        "attribute (the module before the last block's attention, batch-first tokens)"
    )


def feature_token(net: MDReIDNet, feature: str) -> int:
    """Which of the encoder's tokens is ``feature`` (the baseline's one token is stored as ``sh``)."""
    if feature not in FEATURES:
        raise MDReIDError(f"Grad-CAM feature {feature!r}: use one of {', '.join(FEATURES)}")
    if not net.decoupled:
        if feature == "sp":
            raise MDReIDError("Grad-CAM feature 'sp': the single-token baseline has only 'sh'")
        return 0
    return FEATURES.index(feature)


def _constant(x: Tensor, like: Tensor) -> Tensor:
    """``x`` as a constant of the map's graph; a copy, so that features computed under ``inference_mode``
    (as in a Trainer's test hooks) can take part in it."""
    return x.detach().clone().to(like)


def _substituted(
    side: Side, modality: int, feature: str, value: Tensor
) -> tuple[Tensor | None, Tensor | None]:
    """The side's features (one item) with ``feature`` of ``modality`` replaced by ``value``."""
    parts = {"sp": side.sp, "sh": side.sh}
    old = parts[feature]
    if old is None:
        raise MDReIDError(f"Grad-CAM feature {feature!r}: these features have none")
    row = torch.zeros_like(old[:1], dtype=value.dtype)
    row[0, modality] = 1.0
    parts[feature] = _constant(old, value) * (1 - row) + value.view(1, 1, -1) * row
    return parts["sp"], parts["sh"]


def similarity_target(
    net: MDReIDNet,
    query: Side,
    gallery: Side,
    pair: tuple[str, str],
    mode: str,
    side: str,
    modality: int,
    feature: str,
) -> Target:
    """The match score of ``pair`` (one query, one gallery item) as a function of the explained image, which
    is ``modality`` of ``side`` ("query" or "gallery"); the score equals ``mdreid.index search``'s."""
    if mode not in TARGET_MODES:
        raise MDReIDError(f"Grad-CAM similarity mode {mode!r}: use one of {', '.join(TARGET_MODES)}")
    token = feature_token(net, feature)
    q_subset, g_subset = pair

    def target(tokens: Tensor) -> Tensor:
        value = tokens[token]
        q, g = (query, gallery) if side == "query" else (gallery, query)
        sp, sh = _substituted(q, modality, feature, value)
        other = {k: None if v is None else _constant(v, value) for k, v in (("sp", g.sp), ("sh", g.sh))}
        mine = (sp, sh, q.present.bool().clone().to(value.device))
        theirs = (other["sp"], other["sh"], g.present.bool().clone().to(value.device))
        q_args, g_args = (mine, theirs) if side == "query" else (theirs, mine)
        v_q, _ = pair_vectors(*q_args, q_subset, g_subset, "query", mode)
        v_g, _ = pair_vectors(*g_args, q_subset, g_subset, "gallery", mode)
        return (v_q * v_g).sum()

    return target


def identity_target(net: MDReIDNet, item: Side, modality: int, feature: str, label: int) -> Target:
    """The logit of training class ``label`` from ``feature``'s classifier: the modality's own head for
    ``sp``, the head on the concatenated shared features for ``sh`` (the baseline's one head)."""
    token = feature_token(net, feature)
    if net.decoupled:
        head = net.heads_sp[modality] if feature == "sp" else net.head_sh
    else:
        head = net.head
    classes = head.classifier.out_features
    if not 0 <= label < classes:
        raise MDReIDError(f"Grad-CAM identity {label}: the model has classes 0..{classes - 1}")

    def target(tokens: Tensor) -> Tensor:
        value = tokens[token]
        if net.decoupled and feature == "sp":
            return head(value[None])[0, label]
        _, sh = _substituted(item, modality, "sh", value)  # the baseline's one feature is stored as sh
        return head(fill_absent_with_mean(sh, item.present.bool().clone().to(value.device)))[0, label]

    return target


class _OneModality(nn.Module):
    """The encoder with the camera fixed: the one-input model Grad-CAM drives."""

    def __init__(self, net: MDReIDNet, camid: int) -> None:
        super().__init__()
        self.mdl = net.mdl
        self.camid = int(camid)

    def forward(self, images: Tensor) -> Tensor:
        camid = torch.full((images.shape[0],), self.camid, dtype=torch.long, device=images.device)
        return self.mdl(images, camid)


def patch_grid(net: MDReIDNet, image: Tensor) -> tuple[int, int]:
    """(rows, columns) of the image's patch tokens, from their count and the image's aspect."""
    with torch.no_grad():
        count = int(net.mdl.encoder.embed_patches(image[None]).shape[1])
    height, width = image.shape[-2:]
    rows = round(math.sqrt(count * height / width))
    if rows < 1 or count % rows or rows * width != (count // rows) * height:
        raise MDReIDError(f"Grad-CAM: {count} patch tokens do not tile a {height}x{width} image")
    return rows, count // rows


def grad_cam(net: MDReIDNet, image: Tensor, camid: int, target: Target) -> np.ndarray:
    """The Grad-CAM map ``[H, W]`` in [0, 1] of one normalised image ``[3, H, W]`` for ``target``."""
    from pytorch_grad_cam import GradCAM

    rows, cols = patch_grid(net, image)

    def to_grid(tokens: Tensor) -> Tensor:  # [N, prefix + P, W] -> [N, W, rows, cols]
        patches = tokens[:, -rows * cols :]
        return patches.reshape(tokens.shape[0], rows, cols, tokens.shape[-1]).permute(0, 3, 1, 2)

    training = net.training
    net.eval()
    try:
        model = _OneModality(net, camid)
        # gradients also inside a Trainer's test hooks (inference mode); an input that requires grad keeps
        # the graph even when every weight is frozen
        with torch.inference_mode(False), torch.enable_grad():
            x = image[None].detach().clone().requires_grad_(True)
            with GradCAM(model, [cam_layer(net.mdl.encoder)], reshape_transform=to_grid) as cam:
                maps = cam(input_tensor=x, targets=[target])
    finally:
        net.train(training)
    return np.asarray(maps[0], dtype=np.float32)
