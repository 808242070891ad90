"""How spread out a model's features are, in the cosine geometry that ROL, KDL and the evaluation use.

ROL and KDL act on cosines between a sample's six features (specific and shared, per modality). If every
feature points almost the same way (a large common component, e.g. when a batch-hard triplet loss has
shrunk the image-dependent part), those cosines sit near 1, ROL sits at its collinear value 24/36 = 2/3
and the gradients of both terms vanish. These numbers make that visible for a trained checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from mdreid.modalities import MODALITIES


def cosine_summary(sp: Tensor, sh: Tensor | None) -> dict[str, float]:
    """Cosine statistics of features ``sp``/``sh`` ``[N, 3, D]`` (every modality present).

    ``mean_cosine``: mean over all pairs of distinct features of all samples (sp and sh pooled; 1 = all
    collinear, ~0 = spread out); with ``sh``, ``sp_sh_cosine``: mean cos(sp^m, sh^m) of the same sample and
    modality (ROL's target is 0) and ``sh_cross_modal_cosine``: mean cos(sh^i, sh^j), i != j, of the same
    sample (ROL's target is 1).
    """
    feats = sp if sh is None else torch.cat([sp, sh], dim=1)
    unit = F.normalize(feats.double(), dim=-1)
    flat = unit.flatten(0, 1)
    n = flat.shape[0]
    total = flat.sum(0)
    out = {"mean_cosine": float((total @ total - n) / (n * (n - 1)))}  # sum over i != j of u_i . u_j
    if sh is not None:
        m = sp.shape[1]
        out["sp_sh_cosine"] = float((unit[:, :m] * unit[:, m:]).sum(-1).mean())
        shared = torch.einsum("nid,njd->nij", unit[:, m:], unit[:, m:])
        off_diagonal = ~torch.eye(m, dtype=torch.bool)
        out["sh_cross_modal_cosine"] = float(shared[:, off_diagonal].mean())
    return out


@torch.no_grad()
def feature_geometry(net: torch.nn.Module, batches: Iterable[Mapping[str, Tensor]]) -> dict[str, float]:
    """``cosine_summary`` of the pre-BN features ``net.extract`` gives for the complete samples of ``batches``."""
    was_training = net.training
    net.eval()
    sps, shs = [], []
    try:
        for batch in batches:
            complete = batch["present"].bool().all(1)
            images = {m: batch[m][complete] for m in MODALITIES}
            sp, sh = net.extract(images, batch["present"][complete], batch["camid"][complete])
            sps.append(sp)
            shs.append(sh)
    finally:
        net.train(was_training)
    return cosine_summary(torch.cat(sps), None if shs[0] is None else torch.cat(shs))
