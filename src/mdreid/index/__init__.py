"""Gallery search with a trained model: an on-disk index of any gallery, searched with FAISS (docs/index.md).

``store`` keeps the features and metadata, ``extract`` computes them, ``pair_vectors`` turns a modality pair's
similarity into an inner product, ``search`` runs FAISS over it, ``results`` writes JSON and the ranked list,
``cli`` is ``python -m mdreid.index``.
"""
