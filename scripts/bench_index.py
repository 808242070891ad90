"""Benchmark the gallery index's approximate kinds against exact search at 1M vectors.

The vectors are what ``mdreid.index`` stores for one modality pair (``pair_vectors``): 512-d, as for a
cross-modal pair without a common modality (e.g. T->R compares the shared blocks only), identity-clustered
and unit length, like trained ReID features. Exact search (``flat``) gives the reference top 10 of each
query; ``ivf`` and ``hnsw`` report recall@10 against it, build time and search time per query, at a few
settings of their search breadth. Indices are made with ``mdreid.index.search.new_faiss_index``, as ``search``
makes them; one index lives at a time. This is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import os
import time

import faiss
import numpy as np
import torch

from mdreid.index.search import new_faiss_index, set_search_params


def vectors(n: int, dim: int, ids: int, noise: float, seed: int) -> np.ndarray:
    """``n`` unit vectors around ``ids`` identity centres (the same centres for every ``seed``)."""
    centers = torch.randn(ids, dim, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):  # in blocks: no second n x dim temporary
        stop = min(start + 100_000, n)
        pid = torch.randint(0, ids, (stop - start,), generator=gen)
        x = centers[pid] + noise * torch.randn(stop - start, dim, generator=gen)
        out[start:stop] = torch.nn.functional.normalize(x, dim=1).numpy()
    return out


def timed_search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    _, ids = index.search(queries, k)
    return (time.perf_counter() - start) / len(queries), ids


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact, strict=True)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--ids", type=int, default=20_000, help="identities the vectors cluster around")
    parser.add_argument("--noise", type=float, default=0.6, help="0.6: same-identity cosine ~0.75")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--nlist", type=int, default=1024, help="IVF cells")
    parser.add_argument("--train", type=int, default=65_536, help="IVF k-means training vectors")
    parser.add_argument("--nprobe", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--ef-search", type=int, nargs="+", default=[32, 128, 512])
    args = parser.parse_args()
    print(
        f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, load average {os.getloadavg()[0]:.1f}"
    )
    base = vectors(args.num, args.dim, args.ids, args.noise, seed=1)
    queries = vectors(args.queries, args.dim, args.ids, args.noise, seed=2)  # same centres, new draws
    ids = np.arange(args.num, dtype=np.int64)
    print(
        f"{args.num:,} gallery vectors x {args.dim}-d ({base.nbytes / 2**30:.1f} GiB), {args.queries} queries"
    )

    start = time.perf_counter()
    flat = new_faiss_index("flat", args.dim, base)
    flat.add_with_ids(base, ids)
    build = time.perf_counter() - start
    per_query, exact = timed_search(flat, queries, args.k)
    print(f"flat (exact): build {build:.1f} s, {1000 * per_query:.2f} ms/query")
    del flat

    for kind, settings in (("ivf", args.nprobe), ("hnsw", args.ef_search)):
        start = time.perf_counter()
        sample = base[np.random.default_rng(0).choice(args.num, min(args.train, args.num), replace=False)]
        index = new_faiss_index(kind, args.dim, sample, args.nlist if kind == "ivf" else None)
        index.add_with_ids(base, ids)
        build = time.perf_counter() - start
        print(
            f"{kind}: build {build:.1f} s"
            + (f" ({args.nlist} cells, {len(sample):,} training vectors)" if kind == "ivf" else "")
        )
        for value in settings:
            set_search_params(index, kind, nprobe=value, ef_search=value)
            per_query, found = timed_search(index, queries, args.k)
            name = "nprobe" if kind == "ivf" else "efSearch"
            print(
                f"    {name}={value}: recall@{args.k} {recall(found, exact):.4f}, {1000 * per_query:.3f} ms/query"
            )
        del index


if __name__ == "__main__":
    main()
