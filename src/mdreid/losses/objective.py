"""The MDReID training objective (docs/method.md §3.5), with the official hidden weights as defaults.

``L = sum_m [w_id*CE(logits_sp_m) + w_tri*Tri(sp_m)] + w_sh*[w_id*CE(logits_sh) + w_tri*Tri(sh_cat)]
      + w_rol*ROL + w_kdl*KDL``

with ``w_id=0.25``, ``w_tri=1``, ``w_sh=3`` (the official ``s_loc=6`` factor), ``w_rol=1.5``,
``w_kdl=5.25``, all computed in fp32. Per-modality terms use only the samples where that modality is
present. The same class serves the single-token baseline (a ``NetOutput`` with ``decoupled=False``):
``w_id*CE + w_tri*Tri`` on the concatenated feature, no MML terms. The weights come as a ``LossConfig``.
Every returned term is already weighted, so ``loss`` is their sum. ``model.loss.extra_terms`` adds terms of
your own (registered loss terms, docs/extending.md): each is built once, on the first training step, called
as ``term(out, labels)``, weighted, added to ``loss`` and returned (hence logged) under its label.
"""

from __future__ import annotations

import torch
from torch import nn

from mdreid.losses.extra_terms import Term, build_loss_terms
from mdreid.losses.id_loss import id_loss
from mdreid.losses.kdl import knowledge_discrepancy_loss
from mdreid.losses.loss_config import LossConfig
from mdreid.losses.rol import representation_orthogonality_loss
from mdreid.losses.triplet import batch_hard_triplet
from mdreid.models.net_output import NetOutput


class MDReIDObjective(nn.Module):
    """Returns ``{"loss", "id", "triplet", "rol", "kdl"}`` (weighted terms; ``loss`` is their sum)."""

    def __init__(self, config: LossConfig | None = None) -> None:
        super().__init__()
        self.config = config or LossConfig()
        self._extra: dict[str, tuple[float, Term]] | None = None

    @property
    def extra(self) -> dict[str, tuple[float, Term]]:
        """Your terms by label, built on first use: a model that is only evaluated never imports them."""
        if self._extra is None:
            self._extra = build_loss_terms(self.config)
        return self._extra

    def _branch(
        self, logits: torch.Tensor, feats: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """Unweighted (CE, triplet) of one head."""
        return id_loss(logits, labels, self.config.label_smoothing), batch_hard_triplet(feats, labels).loss

    def forward(self, out: NetOutput, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        # Losses run in fp32 even inside a mixed-precision step: autocast would otherwise recast the
        # distance matmuls to fp16, and KDL's ratios of batch extremes are sensitive to that.
        with torch.autocast(device_type=labels.device.type, enabled=False):
            losses = self._forward(out, labels)
            for name, (weight, term) in self.extra.items():
                losses[name] = weight * term(out, labels)
                losses["loss"] = losses["loss"] + losses[name]
        return losses

    def _forward(self, out: NetOutput, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        w = self.config
        if not out.decoupled:
            ce, tri = self._branch(out.logits, out.feat, labels)
            zero = ce.new_zeros(())
            return self._total(w.id_weight * ce, w.triplet_weight * tri, zero, zero)

        present, sp, sh = out.present, out.sp, out.sh
        if bool(present.all()):  # the official batches: no boolean indexing, so no host syncs on a GPU
            present = None
        ce_sh, tri_sh = self._branch(out.logits_sh, out.sh_cat, labels)
        ce, tri = w.shared_weight * ce_sh, w.shared_weight * tri_sh
        for m in range(sp.shape[1]):
            if present is None:
                ce_m, tri_m = self._branch(out.logits_sp[:, m], sp[:, m], labels)
            elif bool(present[:, m].any()):
                rows = present[:, m]
                ce_m, tri_m = self._branch(out.logits_sp[rows, m], sp[rows, m], labels[rows])
            else:
                continue
            ce, tri = ce + ce_m, tri + tri_m
        zero = ce.new_zeros(())
        rol = (
            w.rol_weight * representation_orthogonality_loss(sp, sh, present, w.rol_order)
            if w.rol_weight
            else zero
        )
        kdl = w.kdl_weight * knowledge_discrepancy_loss(sp, sh, labels, present) if w.kdl_weight else zero
        return self._total(w.id_weight * ce, w.triplet_weight * tri, rol, kdl)

    @staticmethod
    def _total(
        ce: torch.Tensor, tri: torch.Tensor, rol: torch.Tensor, kdl: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        return {"loss": ce + tri + rol + kdl, "id": ce, "triplet": tri, "rol": rol, "kdl": kdl}
