"""Multi-modal ranked lists: each query with its top-k gallery items, one image row per modality.

The look follows torchreid's ``visualize_ranked_results`` (query, then the top-k gallery tiles; black
border on the query, green on a true match, red on a wrong one; junk skipped before the top-k) and the
three-row RGB/NIR/TIR grids of the multi-modal ReID papers. For an any-to-any pair Q -> G only the
modalities the pair uses get a row (Q ∪ G, canonical order); the query tile shows the Q modalities and a
gallery tile the G ones, the other cells stay blank.

Ranking is the metric's own (``metrics.functional``): the pair's distance from ``PairDistances``, the masks of
``rank_masks`` and the order of ``ranking_order``, so junk (same pid and same camera, or scene; the query's own
copy is junk under either rule) and not-comparable (+inf) items are removed and, at the same distance, a
non-match is shown before a match, exactly as the scores count it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps
from torch import Tensor

from mdreid.data.records import Record
from mdreid.data.triplet_dataset import read_modalities
from mdreid.explain.shares import MatchShares, Side, drop_one_shares
from mdreid.metrics.any_to_any import JUNK_RULES
from mdreid.metrics.functional import query_rank_stats, rank_masks, ranking_order
from mdreid.metrics.groups import pair_name
from mdreid.metrics.pair_similarity import PairDistances
from mdreid.modalities import LETTERS, MODALITIES, NUM_MODALITIES, subset_indices
from mdreid.process.errors import MDReIDError

BORDER = 4
GAP = 8  # between gallery columns
QUERY_GAP = 24  # extra gap after the query column (torchreid: 90 px for 128x256 tiles)
ROW_GAP = 3  # between the modality rows of one query
BLOCK_GAP = 16  # between queries
HEADER = 14  # "Query", "Rank i" labels
LABEL_WIDTH = 26  # modality names on the left
PERSON_TILE = (64, 128)  # (w, h)
VEHICLE_TILE = (128, 64)
QUERY_COLOUR = (0, 0, 0)
MATCH_COLOUR = (0, 255, 0)
WRONG_COLOUR = (255, 0, 0)
UNKNOWN_COLOUR = (128, 128, 128)  # identity of the query not known (gallery search)
BACKGROUND = (255, 255, 255)


@dataclass(frozen=True)
class RankedQuery:
    """One query's top-k after junk removal; positions index the rows of ``samples``."""

    query: int
    gallery: tuple[int, ...]
    matches: tuple[bool, ...]  # gallery item has the query's pid
    distances: tuple[float, ...]


@dataclass(frozen=True)
class GridLayout:
    """Pixel geometry of a ranked-list grid: blocks (queries) x rows (modalities) x columns (query + top-k)."""

    tile: tuple[int, int]  # (w, h) of one image, border excluded
    rows: int
    columns: int
    blocks: int

    @property
    def cell(self) -> tuple[int, int]:
        return self.tile[0] + 2 * BORDER, self.tile[1] + 2 * BORDER

    @property
    def block_height(self) -> int:
        return self.rows * self.cell[1] + (self.rows - 1) * ROW_GAP

    @property
    def size(self) -> tuple[int, int]:
        width = LABEL_WIDTH + self.columns * self.cell[0] + (self.columns - 1) * GAP + QUERY_GAP
        height = HEADER + self.blocks * self.block_height + (self.blocks - 1) * BLOCK_GAP
        return width, height

    def origin(self, block: int, row: int, column: int) -> tuple[int, int]:
        """Top-left corner of a bordered cell."""
        x = LABEL_WIDTH + column * (self.cell[0] + GAP) + (QUERY_GAP if column else 0)
        y = HEADER + block * (self.block_height + BLOCK_GAP) + row * (self.cell[1] + ROW_GAP)
        return x, y


@dataclass(frozen=True)
class _Split:
    """The query and gallery rows of ``samples`` (CPU) and the junk grouping ids."""

    samples: dict[str, Tensor | None]
    query: Tensor  # sample positions of the queries, in samples order
    gallery: Tensor
    group: Tensor  # camid or sceneid per sample

    def distances(self, query_positions: Tensor) -> PairDistances:
        s, g = self.samples, self.gallery

        def take(name: str, rows: Tensor) -> Tensor | None:
            return None if s[name] is None else s[name][rows]

        return PairDistances(
            take("sp", query_positions),
            take("sh", query_positions),
            s["present"][query_positions],
            take("sp", g),
            take("sh", g),
            s["present"][g],
        )


def _split(samples: Mapping[str, Tensor | None], junk: str) -> _Split:
    if junk not in JUNK_RULES:
        raise MDReIDError(f"ranked list junk: unknown rule {junk!r}: use one of {', '.join(JUNK_RULES)}")
    cpu = {k: None if v is None else v.cpu() for k, v in samples.items()}
    query = torch.nonzero(cpu["is_query"]).flatten()
    gallery = torch.nonzero(cpu["is_gallery"]).flatten()
    if not len(query) or not len(gallery):
        raise MDReIDError(
            "ranked list: samples hold no query or no gallery item; check is_query / is_gallery"
        )
    return _Split(cpu, query, gallery, cpu["camid" if junk == "camera" else "sceneid"])


def pick_queries(
    samples: Mapping[str, Tensor | None],
    pair: tuple[str, str],
    n: int,
    seed: int = 0,
    similarity: str = "code",
    junk: str = "camera",
) -> list[int]:
    """``n`` query rows (positions among the queries) worth showing for ``pair``, deterministic for ``seed``.

    The first ceil(n/2) are the worst-AP queries (ascending AP, ties by position: fast-reid's view of the
    failures), the rest are drawn at random among the other queries so typical cases show too (sorted by
    position). Only queries the metric scores are eligible (all Q modalities present, a positive left);
    fewer than ``n`` come back when fewer are eligible.
    """
    split = _split(samples, junk)
    distances = split.distances(split.query)
    q_pid, g_pid = split.samples["pid"][split.query], split.samples["pid"][split.gallery]
    q_group, g_group = split.group[split.query], split.group[split.gallery]
    aps, valid = [], []
    for rows, dists in distances.chunks([pair], similarity):
        stats = query_rank_stats(next(dists), q_pid[rows], g_pid, q_group[rows], g_group)
        aps.append(stats.ap)
        valid.append(stats.valid)
    eligible = torch.nonzero(torch.cat(valid)).flatten()
    ap = torch.cat(aps)[eligible]
    worst = eligible[torch.sort(ap, stable=True).indices[: (n + 1) // 2]]
    rest = eligible[~torch.isin(eligible, worst)]
    generator = torch.Generator().manual_seed(seed)
    extra = rest[torch.randperm(len(rest), generator=generator)[: max(0, n - len(worst))]]
    return worst.tolist() + sorted(extra.tolist())


def rank_queries(
    samples: Mapping[str, Tensor | None],
    pair: tuple[str, str],
    query_rows: Sequence[int],
    similarity: str = "code",
    junk: str = "camera",
    topk: int = 10,
) -> list[RankedQuery]:
    """The top-k valid gallery items of the selected queries (distances of those queries only)."""
    split = _split(samples, junk)
    q_subset, g_subset = pair
    rows = torch.as_tensor(list(query_rows), dtype=torch.long)
    if not len(rows) or int(rows.min()) < 0 or int(rows.max()) >= len(split.query):
        raise MDReIDError(
            f"ranked list {pair_name(*pair)}: query_rows {list(query_rows)} must be non-empty positions "
            f"among the {len(split.query)} queries"
        )
    positions = split.query[rows]
    distances = split.distances(positions)
    lacking = rows[~distances.query_mask(q_subset)].tolist()
    if lacking:
        raise MDReIDError(
            f"ranked list {pair_name(*pair)}: query rows {lacking} lack a modality of {q_subset}; "
            "choose queries with pick_queries"
        )
    dist = distances.distance(q_subset, g_subset, similarity)
    s, gallery = split.samples, split.gallery
    masks = rank_masks(s["pid"][positions], s["pid"][gallery], split.group[positions], split.group[gallery])
    order, ranked = ranking_order(dist, masks)
    out = []
    for i, position in enumerate(positions.tolist()):
        top = order[i, : min(topk, int(ranked[i]))]
        out.append(
            RankedQuery(
                query=position,
                gallery=tuple(gallery[top].tolist()),
                matches=tuple(masks.same_pid[i, top].tolist()),
                distances=tuple(dist[i, top].tolist()),
            )
        )
    return out


def _record(records: Sequence[Record], samples: Mapping[str, Tensor | None], position: int) -> Record:
    index = int(samples["index"][position])
    if not 0 <= index < len(records):
        raise MDReIDError(
            f"ranked list: sample index {index} is outside the {len(records)} records; pass the evaluation "
            "listing (EvalTripletDataset.records) the samples were computed from"
        )
    return records[index]


def record_images(record: Record, modalities: Sequence[int]) -> dict[int, Image.Image]:
    keep = [m in modalities for m in range(NUM_MODALITIES)]
    return dict(zip(modalities, read_modalities(record, keep), strict=True))


def _paste_column(
    canvas: Image.Image,
    layout: GridLayout,
    block: int,
    column: int,
    images: Mapping[int, Image.Image],
    used: Sequence[int],
    colour: tuple[int, int, int],
    captions: Mapping[int, str] | None = None,
) -> None:
    for row, m in enumerate(used):
        if m in images:
            tile = images[m].resize(layout.tile, Image.Resampling.BILINEAR)
            origin = layout.origin(block, row, column)
            canvas.paste(ImageOps.expand(tile, border=BORDER, fill=colour), origin)
            if captions and captions.get(m):
                _caption(canvas, origin, layout, captions[m])


def _caption(canvas: Image.Image, origin: tuple[int, int], layout: GridLayout, text: str) -> None:
    """``text`` on a white band at the bottom of a tile (inside its border)."""
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    left, top, right, bottom = draw.multiline_textbbox((0, 0), text, font=font, spacing=1)
    x = origin[0] + BORDER
    y = origin[1] + BORDER + layout.tile[1] - (bottom - top) - 2
    draw.rectangle((x, y, x + layout.tile[0] - 1, origin[1] + BORDER + layout.tile[1] - 1), fill=BACKGROUND)
    draw.multiline_text((x + 1, y - top + 1), text, fill=QUERY_COLOUR, font=font, spacing=1)


def share_captions(shares: MatchShares) -> dict[int, str]:
    """Per modality row of a gallery tile: the share of the query's and of the gallery's modality there."""
    out = {}
    for m, letter in enumerate(LETTERS):
        lines = [
            f"{side} {values[letter]:+.3f}"
            for side, values in (("q", shares.query), ("g", shares.gallery))
            if values.get(letter) is not None
        ]
        if lines:
            out[m] = "\n".join(lines)
    return out


def ranked_list_grid(
    samples: Mapping[str, Tensor | None],
    records: Sequence[Record],
    pair: tuple[str, str],
    query_rows: Sequence[int],
    similarity: str = "code",
    junk: str = "camera",
    topk: int = 10,
    explain: Callable[..., Any] | None = None,
) -> Image.Image:
    """One block per query: rows = the pair's modalities, columns = query then ranks 1..topk; every gallery
    tile is captioned with the drop-one shares (``explain.shares``) of its modality row.

    ``records`` is the evaluation listing aligned with ``samples["index"]`` (drawing: ``draw_ranked_lists``).
    ``explain(query, gallery, pair, sides=...)`` (an ``Explainer.match``) swaps the images for Grad-CAM
    overlays: each gallery item's maps for its match, the query's for its rank-1 match (the only one whose
    query maps it asks for).
    """
    ranked = rank_queries(samples, pair, query_rows, similarity, junk, topk)
    q_mods, g_mods = subset_indices(pair[0]), subset_indices(pair[1])
    cpu = {k: None if v is None else v.cpu() for k, v in samples.items()}
    blocks = []
    for r in ranked:
        query = _record(records, samples, r.query)
        q_images = record_images(query, q_mods)
        if not r.gallery:
            blocks.append((q_images, []))
            continue
        side = lambda rows: Side(*(None if cpu[k] is None else cpu[k][rows] for k in ("sp", "sh", "present")))  # noqa: E731
        shares = drop_one_shares(side([r.query]), side(list(r.gallery)), *pair, similarity)
        gallery = []
        for rank, (position, match, share) in enumerate(zip(r.gallery, r.matches, shares, strict=True)):
            item = _record(records, samples, position)
            images = record_images(item, g_mods)
            if explain is not None:  # the query's maps are drawn once, for its rank-1 match
                found = explain(query, item, pair, sides=("query", "gallery") if rank == 0 else ("gallery",))
                images = {LETTERS.index(c): cam.overlay for c, cam in found.gallery.items()}
                if rank == 0:
                    q_images = {LETTERS.index(c): cam.overlay for c, cam in found.query.items()}
            gallery.append((images, MATCH_COLOUR if match else WRONG_COLOUR, share_captions(share)))
        blocks.append((q_images, gallery))
    return draw_ranked_lists(pair, blocks, topk)


def draw_ranked_lists(
    pair: tuple[str, str],
    blocks: Sequence[tuple[Mapping[int, Image.Image], Sequence[tuple]]],
    topk: int,
) -> Image.Image:
    """The grid of ``ranked_list_grid`` from images: per query its images by modality and its ranked gallery
    items as (images by modality, border colour) or (images, colour, captions by modality). Tiles are 64x128 (persons) or 128x64 (vehicles), picked from
    the first query image's aspect."""
    used = sorted(set(subset_indices(pair[0])) | set(subset_indices(pair[1])))
    first = next(iter(blocks[0][0].values()))
    tile = VEHICLE_TILE if first.width > first.height else PERSON_TILE
    layout = GridLayout(tile, rows=len(used), columns=1 + topk, blocks=len(blocks))
    canvas = Image.new("RGB", layout.size, BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for column in range(layout.columns):
        x = layout.origin(0, 0, column)[0]
        draw.text((x + BORDER, 1), f"Rank {column}" if column else "Query", fill=QUERY_COLOUR, font=font)
    for block, (query_images, gallery) in enumerate(blocks):
        for row, m in enumerate(used):
            y = layout.origin(block, row, 0)[1] + layout.cell[1] // 2
            draw.text((2, y), MODALITIES[m], fill=QUERY_COLOUR, font=font, anchor="lm")
        _paste_column(canvas, layout, block, 0, query_images, used, QUERY_COLOUR)
        for column, (gallery_images, colour, *captions) in enumerate(gallery, start=1):
            _paste_column(canvas, layout, block, column, gallery_images, used, colour, *captions)
    return canvas
