"""Your own data as a manifest: one row per sample, in CSV or JSON Lines (docs/manifest.md).

Columns: ``split`` (train, val, query, gallery, or test = both query and gallery), ``pid``, ``camid``, optional
``sceneid``, and ``rgb``, ``nir``, ``tir``: a path relative to the manifest's folder (or absolute), or empty
when the sample lacks that modality; at least one is set. ``stitched`` (optional, true/false) marks one
768x128 R|N|T strip named in all three columns, as RGBNT100 stores it.

Rows keep the manifest's order inside each split, labels are the sorted training pids, and every problem is
reported at once with its row number. A manifest with scene ids uses the scene junk rule (MSVR310's),
otherwise the camera rule.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from itertools import chain
from pathlib import Path

from mdreid.data.records import Benchmark, Record
from mdreid.files.atomic_io import atomic_write_text
from mdreid.process.errors import MDReIDError

REQUIRED = ("split", "pid", "camid")
MODALITY_COLUMNS = ("rgb", "nir", "tir")  # R, N, T
COLUMNS = (*REQUIRED, "sceneid", *MODALITY_COLUMNS, "stitched")
SPLITS = ("train", "val", "query", "gallery", "test")
# the fields of a Row that a Record keeps as they are
_RECORD_FIELDS = ("paths", "pid", "camid", "sceneid", "stitched")
_LISTED = 10  # distinct problems quoted in one error; the count says how many more
_ROWS_QUOTED = 3  # row numbers quoted per problem

log = logging.getLogger("mdreid.data.readers")


@dataclass(frozen=True)
class Row:
    """One valid manifest row; absent modalities have an empty path."""

    number: int  # line number in the file (the CSV header is line 1)
    split: str
    pid: int
    camid: int
    sceneid: int
    paths: tuple[str, str, str]
    stitched: bool


def _raw_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line number, {column: text})`` for each data row of a CSV or JSON Lines file."""
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    item = json.loads(line)
                except json.JSONDecodeError as err:
                    raise MDReIDError(f"{path}: row {number} is not a JSON object ({err.msg})") from err
                if not isinstance(item, dict):
                    raise MDReIDError(f"{path}: row {number} is not a JSON object")
                yield number, {k: "" if v is None else str(v) for k, v in item.items()}
        return
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise MDReIDError(
            f"{path}: the header lacks column(s) {', '.join(missing)}; a manifest needs "
            f"{', '.join(REQUIRED)} and at least one of {', '.join(MODALITY_COLUMNS)}"
        )
    for row in reader:
        yield reader.line_num, {k: (v or "").strip() for k, v in row.items() if k is not None}


def _integer(value: str, column: str, minimum: int | None = None) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{column}={value!r} is not an integer") from None
    if minimum is not None and number < minimum:
        raise ValueError(f"{column}={number} must be >= {minimum}")
    return number


def _row(number: int, raw: dict[str, str], base: Path) -> Row:
    """A valid row, or ValueError saying what is wrong with it; columns outside ``COLUMNS`` are not read."""
    absent = [c for c in REQUIRED if not raw.get(c, "")]
    if absent:
        raise ValueError(f"empty {', '.join(absent)}")
    split = raw["split"].lower()
    if split not in SPLITS:
        raise ValueError(f"split={raw['split']!r} is not one of {', '.join(SPLITS)}")
    files = tuple(raw.get(c, "") for c in MODALITY_COLUMNS)
    if not any(files):
        raise ValueError(f"no modality: {', '.join(MODALITY_COLUMNS)} are all empty")
    stitched = raw.get("stitched", "").lower() in ("1", "true", "yes")
    if stitched and len(set(files)) != 1:
        raise ValueError("stitched=true needs the same strip file in rgb, nir and tir")
    paths = tuple(os.path.normpath(base / f) if f else "" for f in files)
    return Row(
        number,
        split,
        _integer(raw["pid"], "pid"),
        _integer(raw["camid"], "camid", minimum=0),
        _integer(raw["sceneid"], "sceneid", minimum=-1) if raw.get("sceneid", "") else -1,
        paths,  # type: ignore[arg-type]
        stitched,
    )


def _rows_text(numbers: list[int]) -> str:
    """``row 3``, or ``rows 3, 7, 9 (+115 more)``: the first few row numbers of one problem and the count."""
    if len(numbers) == 1:
        return f"row {numbers[0]}"
    shown = ", ".join(str(n) for n in numbers[:_ROWS_QUOTED])
    more = f" (+{len(numbers) - _ROWS_QUOTED} more)" if len(numbers) > _ROWS_QUOTED else ""
    return f"rows {shown}{more}"


def _listing(kind: str, problems: list[tuple[int, str]], policy_key: str) -> str:
    """One error part for a kind of problem: each distinct problem once, with the rows that have it."""
    rows: dict[str, list[int]] = {}
    for number, problem in problems:
        rows.setdefault(problem, []).append(number)
    parts = [f"{_rows_text(numbers)}: {problem}" for problem, numbers in rows.items()]
    shown = "; ".join(parts[:_LISTED])
    more = f" (+{len(parts) - _LISTED} more problems)" if len(parts) > _LISTED else ""
    return f"{len(problems)} {kind}: {shown}{more}; fix the manifest or set {policy_key}=skip to drop them"


def _extra_columns(path: Path, columns: dict[str, None]) -> None:
    """Note once the columns mdreid does not read (a user's ``timestamp`` or ``site``); a known column
    spelt with other case or spaces (``TIR``, `` pid``) is an error, since ignoring it would lose data."""
    known = {c.strip().lower(): c for c in columns if c.strip().lower() in COLUMNS}
    if known:
        names = ", ".join(f"{c!r} (use {c.strip().lower()!r})" for c in known.values())
        raise MDReIDError(f"{path}: column(s) {names}: column names are lowercase, without spaces")
    if columns:
        log.warning(
            "%s: ignoring column(s) %s; mdreid reads only %s", path, ", ".join(columns), ", ".join(COLUMNS)
        )


def read_manifest(path: str | Path, on_missing: str = "error", on_bad_name: str = "error") -> list[Row]:
    """Every valid row; bad rows (``on_bad_name``) and missing files (``on_missing``) are errors listing
    each distinct problem once with its rows, or with ``skip`` dropped with one warning (a missing file drops
    only its modality, and the row only when none is left). Extra columns are ignored with one note."""
    path = Path(path).expanduser().absolute()
    if not path.is_file():
        raise MDReIDError(f"data.manifest={path}: no such file; point it at a .csv or .jsonl manifest")
    rows: list[Row] = []
    bad: list[tuple[int, str]] = []
    missing: list[tuple[int, str]] = []
    seen: dict[tuple[str, tuple[str, str, str]], int] = {}
    extra: dict[str, None] = {}  # columns mdreid does not read, in order of appearance
    for number, raw in _raw_rows(path):
        extra.update(dict.fromkeys(c for c in raw if c not in COLUMNS))
        try:
            row = _row(number, raw, path.parent)
        except ValueError as err:
            bad.append((number, str(err)))
            continue
        key = (row.split, row.paths)
        if key in seen:
            bad.append((number, f"duplicates row {seen[key]}"))
            continue
        seen[key] = number
        lost = [p for p in dict.fromkeys(row.paths) if p and not os.path.isfile(p)]
        if lost:
            missing.append((number, f"{', '.join(lost)} not found"))
            row = replace(row, paths=tuple("" if p in lost else p for p in row.paths))
            if not any(row.paths):
                continue
        rows.append(row)
    _extra_columns(path, extra)
    kinds = (
        ("bad row(s)", bad, "data.on_bad_name", on_bad_name),
        ("missing file(s)", missing, "data.on_missing", on_missing),
    )
    errors = [
        (kind, problems, key) for kind, problems, key, policy in kinds if problems and policy == "error"
    ]
    if errors:
        raise MDReIDError(f"{path}: " + " | ".join(_listing(*error) for error in errors))
    for kind, problems, key, _ in kinds:
        if problems:
            log.warning("%s: skipped %d %s (%s=skip)", path, len(problems), kind, key)
    return rows


def load_manifest(path: str | Path, on_missing: str = "error", on_bad_name: str = "error") -> Benchmark:
    """The manifest as a ``Benchmark``: train relabelled by sorted pid, ``test`` rows in query and gallery,
    ``val`` rows (if any) the validation split, each row both query and gallery."""
    path = Path(path).expanduser().absolute()
    rows = read_manifest(path, on_missing, on_bad_name)
    labels = {pid: i for i, pid in enumerate(sorted({r.pid for r in rows if r.split == "train"}))}

    def records(splits: tuple[str, ...], as_split: str | None = None) -> list[Record]:
        chosen = [r for r in rows if r.split in splits]
        return [
            Record(
                **{field: getattr(r, field) for field in _RECORD_FIELDS},
                label=labels[r.pid] if r.split == "train" else -1,
                index=i,
                split=as_split or r.split,
            )
            for i, r in enumerate(chosen)
        ]

    only_test = not any(r.split in ("query", "gallery") for r in rows)
    query = records(("test",)) if only_test else records(("query", "test"), "query")
    gallery = query if only_test else records(("gallery", "test"), "gallery")
    if not query or not gallery:
        raise MDReIDError(
            f"{path}: no query or no gallery rows; evaluation needs both (split=test counts as both)"
        )
    unmatched = {r.pid for r in query} - {r.pid for r in gallery}
    if unmatched:
        count = sum(r.pid in unmatched for r in query)
        log.warning(
            "%s: %d query row(s) of %d identities have no gallery image and cannot be scored",
            path,
            count,
            len(unmatched),
        )
    scenes = any(r.sceneid >= 0 for r in rows)
    junk = "scene" if scenes else "camera"
    val = records(("val",))
    return Benchmark(
        name="manifest",
        root=str(path),
        train=records(("train",)),
        query=query,
        gallery=gallery,
        junk_rule=junk,
        val=Benchmark("manifest", str(path), query=val, gallery=val, junk_rule=junk) if val else None,
    )


def manifest_rows(bench: Benchmark, folder: str | Path) -> list[dict[str, str]]:
    """The rows that describe ``bench`` (paths relative to ``folder``), in the order ``load_manifest`` keeps:
    train, its own validation rows if any, then query and gallery, or ``test`` once when they are one list (RGBNT201)."""
    scenes = bench.junk_rule == "scene"
    stitched = any(r.stitched for r in chain(bench.train, bench.query, bench.gallery))
    parts: list[tuple[str, list[Record]]] = [("train", bench.train)]
    if bench.val is not None:
        parts.append(("val", bench.val.gallery))
    parts += (
        [("test", bench.query)]
        if bench.query_is_gallery
        else [("query", bench.query), ("gallery", bench.gallery)]
    )
    rows = []
    for split, records in parts:
        for r in records:
            row = {"split": split, "pid": str(r.pid), "camid": str(r.camid)}
            if scenes:
                row["sceneid"] = str(r.sceneid)
            row.update(
                {
                    c: os.path.relpath(p, folder) if p else ""
                    for c, p in zip(MODALITY_COLUMNS, r.paths, strict=True)
                }
            )
            if stitched:
                row["stitched"] = "true" if r.stitched else "false"
            rows.append(row)
    return rows


def write_rows(rows: list[dict[str, str]], out: str | Path) -> Path:
    """Write manifest rows atomically: CSV, or JSON Lines for ``.jsonl`` / ``.ndjson``; returns the path."""
    out = Path(out).expanduser().absolute()
    if out.suffix.lower() in (".jsonl", ".ndjson"):
        return atomic_write_text(out, "".join(json.dumps(row) + "\n" for row in rows))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(out, buffer.getvalue())


def write_manifest(bench: Benchmark, out: str | Path) -> Path:
    """Write ``bench`` as a manifest at ``out``, its paths relative to ``out``'s folder; returns the path."""
    out = Path(out).expanduser().absolute()
    return write_rows(manifest_rows(bench, out.parent), out)
