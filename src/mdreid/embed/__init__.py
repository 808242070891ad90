"""Putting a trained model to work: the ``Embedder`` API (``mdreid.Embedder``), ``python -m mdreid.embed``
(manifests, frame folders, videos with detections -> a feature file) and a tracker's appearance backend.

Nothing is imported here, so ``python -m mdreid.embed --help`` stays fast; see docs/deploy.md.
"""
