"""Benchmark k-reciprocal re-ranking: ``mdreid.metrics.rerank`` vs fast-reid's ``re_ranking``, side by side.

1. RGBNT100 scale (1,715 queries + 8,675 gallery, 512-d features): the same three distance matrices (saved
   once) go to both implementations, each in its own subprocess, which reports its time and its peak resident
   memory above the inputs (Linux ``VmHWM``, reset once the inputs are loaded). The parent compares the two
   results: identical ranked lists (whole list, top 10) and the largest distance difference.
2. A large gallery (default 50,000 images): ours streams the distance rows from the features
   (``rerank_row_blocks``), so only [N, k] neighbour tables, the sparse V and the [Q, G] result are held;
   the peer's dense (Q+G)^2 arrays would need the memory printed (not run).

The peer is ``fastreid==1.4.0``'s ``fastreid/evaluation/rerank.py``, downloaded with pip into a temporary
folder at benchmark time (``bench_metric.peer_file``); nothing of it is kept. ``--skip-peer`` runs ours only.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from bench_metric import peer_file
from mdreid.metrics.rerank import k_reciprocal_rerank, rerank_row_blocks

PEER_RERANK = "fastreid/evaluation/rerank.py"
# the peer's simultaneous (Q+G)^2 arrays while it sorts: original_dist float32, V float32, np.argsort's
# int64 result and its int32 copy; its concatenated input (float32) is gone by then
PEER_BYTES_PER_ELEMENT = 4 + 4 + 8 + 4


def features(num: int, dim: int, num_ids: int, noise: float, seed: int) -> torch.Tensor:
    """Identity-clustered, L2-normalised float32 features, as a ReID model gives."""
    gen = torch.Generator().manual_seed(seed)
    centers = torch.randn(num_ids, dim, generator=gen)
    pid = torch.randint(0, num_ids, (num,), generator=gen)
    x = centers[pid] + noise * torch.randn(num, dim, generator=gen)
    return torch.nn.functional.normalize(x, dim=1)


def euclidean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    sq = a.square().sum(1)[:, None] + b.square().sum(1)[None, :] - 2 * a @ b.T
    return sq.clamp_min_(0).sqrt_()


def _status_mb(field: str) -> float:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+) kB", text).group(1)) / 1024


def reset_peak_mb() -> float:
    """Reset this process's peak resident memory (Linux ``clear_refs``) to now; returns the current MB, the
    baseline that the peak is measured above (imports and inputs excluded)."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_mb("VmRSS")


def peak_mb() -> float:
    return _status_mb("VmHWM")


def worker(args: argparse.Namespace) -> None:
    """One implementation in this process; writes its result and ``{seconds, peak_mb, base_mb}``."""
    folder = Path(args.folder)
    if args.worker == "big":
        x = features(args.num_query + args.big_gallery, args.dim, args.num_ids, args.noise, seed=1)
        n, step = x.shape[0], max(1, (1 << 22) // x.shape[0])

        def row_blocks() -> Iterator[torch.Tensor]:
            for s in range(0, n, step):
                yield euclidean(x[s : s + step], x)

        base = reset_peak_mb()
        start = time.perf_counter()
        out = rerank_row_blocks(row_blocks, args.num_query, args.big_gallery)
    else:
        q_g, q_q, g_g = (np.load(folder / f"{name}.npy") for name in ("q_g", "q_q", "g_g"))
        if args.worker == "peer":
            spec = importlib.util.spec_from_file_location("peer_rerank", folder / "peer_rerank.py")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            base = reset_peak_mb()
            start = time.perf_counter()
            out = module.re_ranking(q_g, q_q, g_g, k1=20, k2=6, lambda_value=0.3)
        else:
            tensors = [torch.from_numpy(a) for a in (q_g, q_q, g_g)]
            base = reset_peak_mb()
            start = time.perf_counter()
            out = k_reciprocal_rerank(*tensors, k1=20, k2=6, lambda_value=0.3).numpy()
    seconds = time.perf_counter() - start
    peak = peak_mb()
    if args.worker != "big":
        np.save(folder / f"out_{args.worker}.npy", out)
    stats = {"seconds": seconds, "peak_mb": peak - base, "base_mb": base, "shape": list(out.shape)}
    (folder / f"stats_{args.worker}.json").write_text(json.dumps(stats))


def run_worker(name: str, folder: Path, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--worker", name, "--folder", str(folder)]
    cmd += [
        f"--{k.replace('_', '-')}={v}"
        for k, v in vars(args).items()
        if k not in ("worker", "folder", "skip_peer", "skip_big")
    ]
    subprocess.run(cmd, check=True)
    return json.loads((folder / f"stats_{name}.json").read_text())


def agreement(ours: np.ndarray, theirs: np.ndarray) -> str:
    a, b = np.argsort(ours, axis=1, kind="stable"), np.argsort(theirs, axis=1, kind="stable")
    whole = (a == b).all(axis=1).mean()
    top10 = (a[:, :10] == b[:, :10]).all(axis=1).mean()
    rows, ranks = np.nonzero(a != b)  # where the lists differ, how far apart (by our distances) the items are
    gap = np.abs(ours[rows, a[rows, ranks]] - ours[rows, b[rows, ranks]]).max(initial=0.0)
    return (
        f"identical ranked lists: {whole:.2%} of queries (whole list), {top10:.2%} (top 10), "
        f"{(a == b).mean():.4%} of (query, rank) positions; max |distance difference| "
        f"{np.abs(ours - theirs).max():.1e}; items placed differently are within {gap:.1e} of each other"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-query", type=int, default=1715)
    parser.add_argument("--num-gallery", type=int, default=8675)
    parser.add_argument("--big-gallery", type=int, default=50000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--num-ids", type=int, default=50)
    parser.add_argument("--noise", type=float, default=1.0)
    parser.add_argument("--skip-peer", action="store_true", help="ours only (no download)")
    parser.add_argument("--skip-big", action="store_true", help="no large-gallery run")
    parser.add_argument("--worker", choices=("ours", "peer", "big"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    with tempfile.TemporaryDirectory(prefix="mdreid-bench-rerank-") as tmp:
        folder = Path(tmp)
        x = features(args.num_query + args.num_gallery, args.dim, args.num_ids, args.noise, seed=0)
        q, g = x[: args.num_query], x[args.num_query :]
        for name, a, b in (("q_g", q, g), ("q_q", q, q), ("g_g", g, g)):
            np.save(folder / f"{name}.npy", euclidean(a, b).numpy())
        n = args.num_query + args.num_gallery
        print(
            f"[1] {args.num_query} queries + {args.num_gallery} gallery, {args.dim}-d, Euclidean distances:"
        )
        ours = run_worker("ours", folder, args)
        print(f"    ours: {ours['seconds']:.1f} s, peak {ours['peak_mb']:.0f} MB above the inputs")
        if not args.skip_peer:
            (folder / "peer_rerank.py").write_bytes(peer_file(folder, PEER_RERANK))
            theirs = run_worker("peer", folder, args)
            print(
                f"    fast-reid re_ranking: {theirs['seconds']:.1f} s, peak {theirs['peak_mb']:.0f} MB above the inputs"
            )
            print(
                f"    peer / ours: {theirs['seconds'] / ours['seconds']:.1f}x time (target >= 3x), "
                f"{ours['peak_mb'] / theirs['peak_mb']:.3f} of the memory (target <= 0.25)"
            )
            print("    " + agreement(np.load(folder / "out_ours.npy"), np.load(folder / "out_peer.npy")))
        print(f"    (the dense (Q+G)^2 = {n}^2 matrix alone is {n * n * 4 / 2**20:.0f} MB in float32)")
    if not args.skip_big:
        n = args.num_query + args.big_gallery
        print(
            f"[2] {args.num_query} queries + {args.big_gallery} gallery, distances streamed from the features:"
        )
        with tempfile.TemporaryDirectory(prefix="mdreid-bench-rerank-") as tmp:
            big = run_worker("big", Path(tmp), args)
        dense_gb = n * n * PEER_BYTES_PER_ELEMENT / 2**30
        print(
            f"    ours: {big['seconds']:.1f} s, peak {big['peak_mb']:.0f} MB above the features "
            f"(result {big['shape']} float32: {np.prod(big['shape']) * 4 / 2**20:.0f} MB)"
        )
        print(
            f"    the dense peer would hold {PEER_BYTES_PER_ELEMENT} bytes x ({n})^2 = {dense_gb:.0f} GB at once "
            f"(this machine: {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GB)"
        )


if __name__ == "__main__":
    main()
