"""Benchmark the any-to-any metric at RGBNT100 scale (1715 queries x 8575 gallery, 512-d per part).

Timings on random, identity-clustered features:

1. ranking one distance matrix (RNT->RNT): ``rank_metrics`` vs the peer fast-reid Cython kernel
   (``fastreid==1.4.0``'s ``rank_cy.pyx``, downloaded with pip and compiled in a temporary folder at
   benchmark time; nothing of it is kept), with the largest differences: per-query AP and INP on the
   queries without a positive tied with a negative, summary mAP and CMC over all queries;
2. all 49 pairs from the per-modality features, distances included (``AnyToAnyReID.compute``), vs
   the peer's 49 calls on the same distance matrices, with the largest difference over the 49 pairs.

``--skip-peer`` runs our part only (no download, no compiler). This is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from mdreid.metrics import AnyToAnyReID, PairDistances, rank_metrics
from mdreid.metrics.functional import query_rank_stats, rank_masks
from mdreid.modalities import all_pairs

PEER_PACKAGE = "fastreid==1.4.0"
PEER_MEMBER = "fastreid/evaluation/rank_cylib/rank_cy.pyx"
CPU = torch.device("cpu")


def make_data(args: argparse.Namespace, device: torch.device) -> dict[str, torch.Tensor]:
    """Queries then gallery; every identity has samples in several cameras, so every query is valid.

    Each identity has one specific centre per modality and ONE shared centre for all three modalities (the
    premise of the method), so cross-modal pairs are as learnable as matched ones; ``--noise`` sets how hard.
    """
    g = torch.Generator().manual_seed(0)
    n = args.num_query + args.num_gallery
    pid = torch.randint(0, args.num_ids, (n,), generator=g)
    centers = torch.randn(args.num_ids, 2, 3, args.dim, generator=g)
    centers[:, 1] = centers[:, 1, :1]  # the shared centre is the same in R, N and T
    feats = centers[pid] + args.noise * torch.randn(n, 2, 3, args.dim, generator=g)
    is_query = torch.arange(n) < args.num_query
    data = {
        "sp": feats[:, 0],
        "sh": feats[:, 1],
        "present": torch.ones(n, 3, dtype=torch.bool),
        "pid": pid,
        "camid": torch.randint(0, args.num_cams, (n,), generator=g),
        "sceneid": torch.full((n,), -1),
        "index": torch.arange(n),
        "is_query": is_query,
        "is_gallery": ~is_query,
    }
    return {k: v.to(device) for k, v in data.items()}


def best_time(fn: Callable[[], object], repeats: int, device: torch.device) -> tuple[float, object]:
    """Fastest of ``repeats`` runs (seconds) and the last result."""
    times, out = [], None
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times), out


def peer_file(workdir: Path, member: str) -> bytes:
    """The bytes of ``member`` (a path ending) inside fast-reid's wheel or sdist, downloaded into ``workdir``
    with pip (no dependencies, nothing installed)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", PEER_PACKAGE, "-d", str(workdir)],
        check=True,
    )
    (archive,) = [p for p in workdir.iterdir() if p.suffix in (".whl", ".gz", ".zip")]
    if archive.suffix == ".gz":
        with tarfile.open(archive) as tar:
            names = {m.name: m for m in tar.getmembers()}
            read = lambda name: tar.extractfile(names[name]).read()  # noqa: E731
            return _member(archive, member, names, read)
    with zipfile.ZipFile(archive) as zf:
        return _member(archive, member, zf.namelist(), zf.read)


def _member(archive: Path, member: str, names, read: Callable[[str], bytes]) -> bytes:
    name = next((n for n in names if n.endswith(member)), None)
    if name is None:
        sys.exit(f"error: {archive.name} has no {member}; pin another fastreid version in PEER_PACKAGE")
    return read(name)


def build_peer(workdir: Path) -> ModuleType:
    """Download fast-reid's wheel/sdist, extract ``rank_cy.pyx``, cythonize and compile it, import it."""
    try:
        import Cython  # noqa: F401
    except ImportError:
        sys.exit("error: the peer kernel needs Cython: `pip install cython` (or run with --skip-peer)")
    source = peer_file(workdir, PEER_MEMBER)
    pyx = workdir / "rank_cy.pyx"
    pyx.write_bytes(source)
    c_file = workdir / "rank_cy.c"
    subprocess.run([sys.executable, "-m", "cython", "-3", str(pyx), "-o", str(c_file)], check=True)
    so_file = workdir / f"rank_cy{sysconfig.get_config_var('EXT_SUFFIX')}"
    cc = (sysconfig.get_config_var("CC") or "cc").split()
    includes = [f"-I{sysconfig.get_paths()['include']}", f"-I{np.get_include()}"]
    subprocess.run([*cc, "-shared", "-fPIC", "-O3", *includes, str(c_file), "-o", str(so_file)], check=True)
    spec = importlib.util.spec_from_file_location("rank_cy", so_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def peer_metrics(peer: ModuleType, dist: torch.Tensor, ids: tuple, max_rank: int) -> dict:
    """fast-reid's kernel on one matrix, as ``evaluate_rank`` calls it (its argsort included), as fractions.

    The kernel averages AP/INP over all queries with zeros for skipped ones; every query is valid here.
    """
    cmc, all_ap, all_inp = peer.evaluate_cy(*[t.cpu().numpy() for t in (dist, *ids)], max_rank)
    return {"ap": np.asarray(all_ap), "inp": np.asarray(all_inp), "cmc": np.asarray(cmc, dtype=np.float64)}


def tie_free_queries(dist: torch.Tensor, ids: tuple) -> np.ndarray:
    """[Q] bool: the query's row has no valid negative at exactly a positive's distance. Only such ties
    can change a score, and the peer breaks them by ``np.argsort`` order while we rank negatives first."""
    same_pid, not_positive = rank_masks(*ids)
    neg = torch.sort(dist.masked_fill(same_pid, math.inf), dim=1).values
    pos = dist.masked_fill(not_positive, math.inf)
    tied = torch.searchsorted(neg, pos, right=True) > torch.searchsorted(neg, pos)
    return (~(tied & ~not_positive).any(dim=1)).cpu().numpy()


def compare(dist: torch.Tensor, ids: tuple, theirs: dict, ours: dict) -> np.ndarray:
    """Largest differences to the peer (fractions): per-query AP and INP on tie-free queries, then mAP and
    CMC over all queries (ties included). ``ours``: this project's mAP and CMC for the same matrix."""
    stats = query_rank_stats(dist, *ids)  # per-query AP and INP (every query is valid here)
    clean = tie_free_queries(dist, ids)
    return np.array(
        [
            np.abs(stats.ap.cpu().numpy() - theirs["ap"])[clean].max(initial=0.0),
            np.abs(stats.inp.cpu().numpy() - theirs["inp"])[clean].max(initial=0.0),
            abs(float(theirs["ap"].mean()) - ours["mAP"]),
            np.abs(theirs["cmc"] - np.asarray(ours["cmc"], dtype=np.float64)).max(),
            1.0 - clean.mean(),
        ]
    )


def report_diffs(diffs: np.ndarray) -> str:
    return (
        "max abs diff (fractions): per-query AP {:.1e} and INP {:.1e} on queries without a tie; "
        "mAP {:.1e} and CMC {:.1e} over all queries ({:.1%} of queries have a positive tied with a negative)"
    ).format(*diffs)


def query_gallery(data: dict) -> tuple[PairDistances, tuple]:
    q, g = data["is_query"], data["is_gallery"]
    pd = PairDistances(
        data["sp"][q], data["sh"][q], data["present"][q], data["sp"][g], data["sh"][g], data["present"][g]
    )
    return pd, (data["pid"][q], data["pid"][g], data["camid"][q], data["camid"][g])


def bench_ranking(
    data: dict, args: argparse.Namespace, device: torch.device, peer: ModuleType | None
) -> None:
    """Part 1: one RNT->RNT distance matrix ranked by rank_metrics and by the peer."""
    pd, ids = query_gallery(data)
    dist = pd.distance("RNT", "RNT")
    ours_s, ours = best_time(lambda: rank_metrics(dist, *ids, max_rank=args.max_rank), args.repeats, device)
    print(
        f"[1] ranking {tuple(dist.shape)} on {device}: rank_metrics {ours_s:.3f} s (num_valid {ours['num_valid']}, "
        f"RNT->RNT mAP {100 * ours['mAP']:.1f})"
    )
    if peer is None:
        return
    if ours["num_valid"] != dist.shape[0]:
        sys.exit("error: some queries have no positive; the peer averages over all queries, so mAP differs")
    peer_s, theirs = best_time(lambda: peer_metrics(peer, dist, ids, args.max_rank), args.repeats, CPU)
    print(f"    fast-reid Cython (CPU) {peer_s:.3f} s; peer / ours = {peer_s / ours_s:.1f}x (target >= 3x)")
    print("    " + report_diffs(compare(dist, ids, theirs, ours)))


def bench_all_pairs(
    data: dict, args: argparse.Namespace, device: torch.device, peer: ModuleType | None
) -> None:
    """Part 2: the 49 pairs from per-modality features, distances and ranking included; then the peer's 49
    calls on the same distance matrices (their construction not timed) and the largest difference."""

    def run() -> object:
        metric = AnyToAnyReID(pairs="all", similarity=args.similarity, max_rank=args.max_rank).to(device)
        metric.update(**data)
        return metric.compute()

    total_s, result = best_time(run, args.repeats, device)
    rnt = result.row("RNT", "RNT")
    print(
        f"[2] all 49 pairs ({args.similarity} mode) on {device}: {total_s:.3f} s, {total_s / 49:.3f} s per pair; "
        f"RNT->RNT mAP {rnt['mAP']:.2f} R1 {rnt['R1']:.2f}"
    )
    if peer is None:
        return
    pd, ids = query_gallery(data)
    peer_s, diffs = 0.0, np.zeros(5)
    for q_subset, g_subset in all_pairs():
        dist = pd.distance(q_subset, g_subset, args.similarity)
        seconds, theirs = best_time(lambda: peer_metrics(peer, dist, ids, args.max_rank), 1, CPU)  # noqa: B023
        peer_s += seconds
        row, name = result.row(q_subset, g_subset), f"{q_subset}->{g_subset}"
        ours = {"mAP": row["mAP"] / 100, "cmc": result.cmc[name].numpy() / 100}
        diffs = np.maximum(diffs, compare(dist, ids, theirs, ours))
    print(
        f"    49 fast-reid Cython calls (CPU, distances given): {peer_s:.3f} s; "
        f"peer / ours = {peer_s / total_s:.1f}x (target >= 3x)"
    )
    print("    over the 49 pairs, " + report_diffs(diffs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-query", type=int, default=1715)
    parser.add_argument("--num-gallery", type=int, default=8575)
    parser.add_argument(
        "--dim", type=int, default=512, help="feature size of one part (one modality, sp or sh)"
    )
    parser.add_argument("--num-ids", type=int, default=50)
    parser.add_argument("--num-cams", type=int, default=8)
    parser.add_argument(
        "--noise",
        type=float,
        default=5.0,
        help="feature noise: 5 gives RNT->RNT mAP ~40%% (hard), 3.5 ~95%% (trained-like)",
    )
    parser.add_argument("--max-rank", type=int, default=50)
    parser.add_argument("--similarity", choices=("code", "paper"), default="code")
    parser.add_argument("--repeats", type=int, default=3, help="timings are the best of this many runs")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--skip-peer", action="store_true", help="time our metric only (no download/compile)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, device {device}")
    torch.manual_seed(0)
    data = make_data(args, device)
    with tempfile.TemporaryDirectory(prefix="mdreid-bench-") as tmp:
        peer = None if args.skip_peer else build_peer(Path(tmp))
        bench_ranking(data, args, device, peer)
        bench_all_pairs(data, args, device, peer)


if __name__ == "__main__":
    main()
