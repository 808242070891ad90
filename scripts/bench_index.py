"""Benchmark the gallery index's approximate kinds against exact search at 1M vectors.

The vectors are what ``mdreid.index`` stores for one modality pair (``pair_vectors``): 512-d, as for a
cross-modal pair without a common modality (e.g. T->R compares the shared blocks only), identity-clustered
and unit length, like trained ReID features: each identity's ~50 gallery items are near-ties for its queries.
Exact search (``flat``) gives the reference top 10 of each query; every approximate setting reports recall@10
against it, its build time and its search time per query two ways, both next to exact search's in the same
run: batch (all queries in one call) and single (one query per call). Indices are made with
``mdreid.index.search.new_faiss_index``, as ``search`` makes them; one index lives at a time. This is a
benchmark, not a test.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import faiss
import numpy as np
import torch

from mdreid.index.kinds import ivf_cells
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
    """Seconds per query with all ``queries`` in one call, and the ids found."""
    start = time.perf_counter()
    _, ids = index.search(queries, k)
    return (time.perf_counter() - start) / len(queries), ids


def single_search(index: faiss.Index, queries: np.ndarray, k: int) -> float:
    """Seconds per query with one query per call."""
    start = time.perf_counter()
    for row in range(len(queries)):
        index.search(queries[row : row + 1], k)
    return (time.perf_counter() - start) / len(queries)


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    """The share of the exact top k that was found, averaged over the queries."""
    return float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact, strict=True)]))


def cpu_name() -> str:
    """The processor's model name (Linux), else the architecture."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.machine()
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "?")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000, help="queries for recall and batch timing")
    parser.add_argument(
        "--single", type=int, default=200, help="of them, searched one per call for exact search's latency"
    )
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--ids", type=int, default=20_000, help="identities the vectors cluster around")
    parser.add_argument("--noise", type=float, default=0.6, help="0.6: same-identity cosine ~0.75")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--kinds", nargs="+", choices=("ivf", "hnsw"), default=["ivf"])
    parser.add_argument("--nlist", type=int, nargs="+", help="IVF cells (default: the index's own rule)")
    parser.add_argument("--nprobe", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--ef-search", type=int, nargs="+", default=[32, 128, 512])
    args = parser.parse_args()
    print(
        f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, {os.cpu_count()} CPUs "
        f"({cpu_name()}), load average {os.getloadavg()[0]:.1f}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    base = vectors(args.num, args.dim, args.ids, args.noise, seed=1)
    queries = vectors(args.queries, args.dim, args.ids, args.noise, seed=2)  # same centres, new draws
    ids = np.arange(args.num, dtype=np.int64)
    print(
        f"{args.num:,} gallery vectors x {args.dim}-d ({base.nbytes / 2**30:.1f} GiB), {args.queries} queries"
    )
    print("| kind | build | setting | recall@10 | batch ms/query | speed-up | single ms/query | speed-up |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")

    start = time.perf_counter()
    flat = new_faiss_index("flat", args.dim, base)
    flat.add_with_ids(base, ids)
    build = time.perf_counter() - start
    batch_exact, exact = timed_search(flat, queries, args.k)
    single_exact = single_search(flat, queries[: args.single], args.k)
    print(
        f"| `flat` (exact) | {build:.1f} s | | 1 | {1e3 * batch_exact:.2f} | 1 | "
        f"{1e3 * single_exact:.2f} | 1 |"
    )
    del flat

    runs = [("ivf", n) for n in (args.nlist or [ivf_cells(args.num)]) if "ivf" in args.kinds]
    runs += [("hnsw", None)] if "hnsw" in args.kinds else []
    for kind, nlist in runs:
        start = time.perf_counter()
        index = new_faiss_index(kind, args.dim, base, nlist)
        index.add_with_ids(base, ids)
        build = f"{time.perf_counter() - start:.1f} s"
        name = f"`ivf`, {nlist:,} cells" if kind == "ivf" else "`hnsw`, 32 links"
        for value in args.nprobe if kind == "ivf" else args.ef_search:
            set_search_params(index, kind, nprobe=value, ef_search=value)
            batch, found = timed_search(index, queries, args.k)
            single = single_search(index, queries, args.k)
            setting = f"nprobe = {value}" if kind == "ivf" else f"efSearch = {value}"
            print(
                f"| {name} | {build} | {setting} | {recall(found, exact):.4f} | {1e3 * batch:.3f} | "
                f"{batch_exact / batch:.0f}x | {1e3 * single:.3f} | {single_exact / single:.0f}x |",
                flush=True,
            )
            name, build = "", ""
        del index
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
