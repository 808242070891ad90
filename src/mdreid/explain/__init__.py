"""Why a match was made: per-modality Grad-CAM maps (``cam``), each modality's share of a match (``shares``),
overlays (``overlay``), the per-match explanation that ties them to a checkpoint (``explainer``) and
``python -m mdreid.explain`` (``cli``). Grad-CAM needs the ``explain`` extra (``pip install mdreid[explain]``).
"""
