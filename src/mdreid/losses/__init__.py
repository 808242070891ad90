"""MDReID losses: label-smoothed ID, soft-margin batch-hard triplet, ROL, KDL and their weighted sum."""

from mdreid.losses.id_loss import id_loss
from mdreid.losses.kdl import knowledge_discrepancy_loss
from mdreid.losses.loss_config import LossConfig
from mdreid.losses.objective import MDReIDObjective
from mdreid.losses.rol import representation_orthogonality_loss, rol_target
from mdreid.losses.triplet import TripletResult, batch_hard_triplet, euclidean_dist, hard_example_mining

__all__ = [
    "LossConfig",
    "MDReIDObjective",
    "TripletResult",
    "batch_hard_triplet",
    "euclidean_dist",
    "hard_example_mining",
    "id_loss",
    "knowledge_discrepancy_loss",
    "representation_orthogonality_loss",
    "rol_target",
]
