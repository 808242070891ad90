"""The MDReID network: CLIP visual tower (open_clip), modality-decoupled encoder, BNNeck heads.

Import from the submodules (``mdreid.models.mdreid_net`` ...): this package imports nothing itself, so that
a light module such as ``clip_weights`` does not load open_clip with it.
"""
