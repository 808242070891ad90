"""The FAISS index kinds a gallery index offers and their default settings (no FAISS import: the CLI parses
its arguments with these).

``ivf`` is the kind for large galleries. Its cells are small (``IVF_CELL_SIZE`` items each on average), so
one identity's gallery items sit in one or two cells and a few probed cells (``IVF_NPROBE``) hold a query's
true neighbours; larger cells mix several identities and lose recall at the same search cost. A query's
cells are found by exact inner products with all centroids, a cost of one vector per cell. Recall and speed
against exact search at 1M vectors: docs/benchmarks.md.
"""

from __future__ import annotations

KINDS: tuple[str, ...] = ("flat", "ivf", "hnsw")
HNSW_LINKS = 32
IVF_CELL_SIZE = 64
# k-means sample per cell: fewer leave noisy centroids that split loose identity clusters among cells;
# training costs cells x sample inner products per round
IVF_TRAIN_PER_CELL = 32
IVF_NPROBE = 8


def ivf_cells(n: int) -> int:
    """The default number of IVF cells for ``n`` gallery vectors: one per ``IVF_CELL_SIZE``."""
    return max(1, n // IVF_CELL_SIZE)
