"""The Gradio page: query images (upload, or an index item's), the gallery subset, top-k, re-ranking, the
feature the maps explain; out come the ranked list with scores and drop-one shares, and Grad-CAM overlays of
the first matches. Every user error (``MDReIDError``) is shown on the page as an error message.

Endpoints (for ``gradio_client``): ``/search`` and ``/load_item`` (see ``build_page``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mdreid.app.engine import Match, SearchEngine
from mdreid.modalities import LETTERS
from mdreid.process.errors import MDReIDError

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # read when gradio is imported
import gradio as gr  # noqa: E402

NAMES = {"R": "RGB", "N": "NIR", "T": "TIR"}
HEADERS = ["rank", "item", "pid", "camid", "score", "reranked", *(f"{s} {c}" for s in "qg" for c in LETTERS)]


def _share(value: float | None) -> str:
    return "" if value is None else f"{value:+.4f}"


def table_rows(matches: list[Match]) -> list[list[Any]]:
    """The ranked list as the page shows it: ids, score, re-ranked distance, then the shares, query modality
    columns ``q R`` .. and gallery ones ``g R`` .. (blank: not compared or not droppable)."""
    rows = []
    for m in matches:
        shares = [m.shares.query.get(c) for c in LETTERS] + [m.shares.gallery.get(c) for c in LETTERS]
        rows.append(
            [
                m.hit.rank,
                m.hit.item,
                m.hit.pid,
                m.hit.camid,
                f"{m.hit.score:.4f}",
                "" if m.reranked is None else f"{m.reranked:.4f}",
                *(_share(s) for s in shares),
            ]
        )
    return rows


def _user_errors(fn: Callable) -> Callable:
    """An ``MDReIDError`` becomes a visible page error (``gr.Error``), never a dead request."""

    def wrapped(*args: Any) -> Any:
        try:
            return fn(*args)
        except MDReIDError as err:
            raise gr.Error(str(err)) from err

    wrapped.__name__ = fn.__name__
    return wrapped


def build_page(engine: SearchEngine, index: str | Path) -> gr.Blocks:
    """The page over ``index`` (a folder; the page's index box may name another one built by the same model)."""

    @_user_errors
    def run_search(rgb, nir, tir, camid, folder, gallery, top_k, rerank, feature, cams):
        record = engine.query({"R": rgb, "N": nir, "T": tir}, camid)
        g_subset = "".join(c for c in LETTERS if c in (gallery or []))
        if not g_subset:
            raise MDReIDError("no gallery modality: tick at least one of R, N, T")
        q_subset, matches = engine.search(folder, record, g_subset, int(top_k), bool(rerank))
        overlays = []
        for match in matches[: int(cams)]:
            found = engine.explain(record, q_subset, match, g_subset, feature)
            rank = match.hit.rank
            overlays += [(c.overlay, f"rank {rank} query {NAMES[k]}") for k, c in found.query.items()]
            overlays += [(c.overlay, f"rank {rank} gallery {NAMES[k]}") for k, c in found.gallery.items()]
        status = f"{q_subset} -> {g_subset}: {len(matches)} matches" + (" (re-ranked)" if rerank else "")
        return table_rows(matches), overlays, status

    @_user_errors
    def load_item(folder, item):
        if item is None or int(item) != item:
            raise MDReIDError(f"item {item!r}: give an item number of the index")
        record = engine.item_record(folder, int(item))
        if record.stitched:
            raise MDReIDError(f"item {int(item)} is a stitched strip; upload its panels instead")
        return *(p or None for p in record.paths), record.camid

    with gr.Blocks(analytics_enabled=False, title="mdreid search") as page:
        gr.Markdown("## mdreid search\nQuery images of any modalities against a gallery index.")
        with gr.Row():
            # files, not gr.Image: a non-image upload then reaches the engine's check and its named error
            images = [
                gr.File(
                    label=f"query {NAMES[c]}", file_types=["image"], type="filepath", elem_id=f"query-{c}"
                )
                for c in LETTERS
            ]
            with gr.Column():
                camid = gr.Number(value=0, precision=0, label="query camera id", elem_id="camid")
                folder = gr.Textbox(value=str(index), label="index folder", elem_id="index")
                item = gr.Number(value=0, precision=0, label="index item", elem_id="item")
                load = gr.Button("use this item's images", elem_id="load")
        with gr.Row():
            gallery = gr.CheckboxGroup(list(LETTERS), value=list(LETTERS), label="gallery modalities")
            top_k = gr.Slider(1, 50, value=10, step=1, label="top-k")
            rerank = gr.Checkbox(value=False, label="k-reciprocal re-ranking", elem_id="rerank")
            feature = gr.Radio(["sh", "sp"], value="sh", label="maps explain the feature")
            cams = gr.Slider(0, 10, value=2, step=1, label="Grad-CAM for the first matches")
        button = gr.Button("Search", variant="primary", elem_id="search")
        status = gr.Markdown(elem_id="status")
        table = gr.Dataframe(headers=HEADERS, label="ranked list", interactive=False, elem_id="results")
        overlays = gr.Gallery(label="Grad-CAM", columns=6, height="auto", elem_id="cams")
        button.click(
            run_search,
            [*images, camid, folder, gallery, top_k, rerank, feature, cams],
            [table, overlays, status],
            api_name="search",
        )
        load.click(load_item, [folder, item], [*images, camid], api_name="load_item")
    return page
