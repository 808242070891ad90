"""Search results as JSON and as a ranked-list image (the evaluation's grid: ``plots.ranked_list``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from mdreid.data.records import Record
from mdreid.files.atomic_io import atomic_write, atomic_write_text
from mdreid.index.search import Hit
from mdreid.index.store import GalleryItems
from mdreid.modalities import LETTERS

# search's --out names where the results go
_OUT_ELSEWHERE = "write them elsewhere with --out DIR"

QueryResult = tuple[GalleryItems, str, list[Hit]]  # one query, the subset it was compared on, its hits


def results_json(results: Sequence[QueryResult], g_subset: str) -> str:
    """One entry per query: its files, the pair searched and its ranked hits (score, distance, files)."""
    return json.dumps(
        [
            {
                "query": {"paths": list(query.paths[0]), "camid": int(query.camid[0])},
                "pair": f"{q_subset}->{g_subset}",
                "hits": [asdict(hit) for hit in hits],
            }
            for query, q_subset, hits in results
        ],
        indent=2,
    )


def ranked_list_image(results: Sequence[QueryResult], g_subset: str, top_k: int):
    """One block per query: its images, then its hits (green: same identity, red: another, grey: the query's
    identity is unknown)."""
    from mdreid.reporting.plots.ranked_list import (
        MATCH_COLOUR,
        UNKNOWN_COLOUR,
        WRONG_COLOUR,
        draw_ranked_lists,
        record_images,
    )

    union = "".join(c for c in LETTERS if any(c in q_subset for _, q_subset, _ in results))
    blocks = []
    for query, q_subset, hits in results:
        record = Record(query.paths[0], int(query.pid[0]), int(query.camid[0]), stitched=query.stitched[0])
        q_images = record_images(record, [LETTERS.index(c) for c in q_subset])
        pid = int(query.pid[0])
        gallery = []
        for hit in hits:
            item = Record(hit.paths, hit.pid, hit.camid, stitched=hit.stitched)
            colour = UNKNOWN_COLOUR if pid < 0 else MATCH_COLOUR if hit.pid == pid else WRONG_COLOUR
            gallery.append((record_images(item, [LETTERS.index(c) for c in g_subset]), colour))
        blocks.append((q_images, gallery))
    return draw_ranked_lists((union, g_subset), blocks, top_k)


def write_results(results: Sequence[QueryResult], g_subset: str, out: str | Path | None, top_k: int) -> str:
    """The JSON text; with ``out``, also ``out/results.json`` and ``out/ranked_list.png`` (atomically; no image
    for queries from a feature file, which names no images)."""
    text = results_json(results, g_subset)
    if out is not None:
        out = Path(out)
        atomic_write_text(out / "results.json", text + "\n", _OUT_ELSEWHERE)
        if not any(any(path for path in query.paths[0]) for query, _, _ in results):
            return text
        image = ranked_list_image(results, g_subset, top_k)
        atomic_write(out / "ranked_list.png", lambda f: image.save(f, format="PNG"), _OUT_ELSEWHERE)
    return text
