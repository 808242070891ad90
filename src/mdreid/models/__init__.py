"""The MDReID network: CLIP visual tower (open_clip), modality-decoupled encoder, BNNeck heads."""

from mdreid.models.backbone import build_backbone
from mdreid.models.clip_weights import load_clip_visual_weights
from mdreid.models.heads import BNNeckClassifier
from mdreid.models.mdl_encoder import MDLEncoder
from mdreid.models.mdreid_net import MDReIDNet

__all__ = ["BNNeckClassifier", "MDLEncoder", "MDReIDNet", "build_backbone", "load_clip_visual_weights"]
