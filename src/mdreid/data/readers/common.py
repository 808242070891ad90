"""What the three benchmark readers share: folder listing, filename grammars, the bad-input policy and the
assembly of sorted records, so that each benchmark module only states its layout."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from mdreid.data.records import Benchmark, Record
from mdreid.process.errors import MDReIDError

POLICIES: tuple[str, ...] = ("error", "skip")
MAX_LISTED = 5  # offending paths quoted in an error message

log = logging.getLogger("mdreid.data.readers")


def check_choice(key: str, value: str, valid: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``valid``; otherwise a one-line error listing the valid ones."""
    if value not in valid:
        raise MDReIDError(f"invalid {key}={value!r}: use one of {', '.join(valid)}")
    return value


@dataclass(frozen=True)
class Grammar:
    """An anchored basename rule. ``fields`` maps a match to (raw pid, 0-based camid, sceneid or -1).

    Names are matched whole (``fullmatch``, ASCII digits only) on the basename, never the full path, so a
    parent folder such as ``exp-3_c2`` cannot be parsed by mistake (docs/datasets.md, "Pitfalls" items 5
    and 10).
    """

    form: str  # the rule as users read it, quoted in error messages
    pattern: re.Pattern[str]
    fields: Callable[[re.Match[str]], tuple[int, int, int]]

    def parse(self, name: str) -> tuple[int, int, int] | None:
        """(pid, camid, sceneid), or None when the name breaks the rule (including a camera 0 in a 1-based set)."""
        match = self.pattern.fullmatch(name)
        if match is None:
            return None
        pid, camid, sceneid = self.fields(match)
        return (pid, camid, sceneid) if camid >= 0 else None


def one_based_camera(match: re.Match[str]) -> tuple[int, int, int]:
    """Fields of grammars whose group 1 is the pid and group 2 a camera counted from 1 (RGBNT201, RGBNT100)."""
    return int(match[1]), int(match[2]) - 1, -1


class Found(NamedTuple):
    """A complete, well-named triplet before it gets its split, label and index."""

    name: str
    paths: tuple[str, str, str]
    pid: int
    camid: int
    sceneid: int


def list_jpgs(folder: str) -> set[str]:
    """Names of the visible ``.jpg`` files in ``folder`` (empty if it is absent); other entries are strays."""
    try:
        with os.scandir(folder) as entries:
            return {
                e.name
                for e in entries
                if e.name.endswith(".jpg") and not e.name.startswith(".") and e.is_file()
            }
    except (FileNotFoundError, NotADirectoryError):
        return set()


def list_id_dirs(folder: str) -> list[str]:
    """Sorted digit-only subfolders (MSVR310 vehicle ids); ``__MACOSX``, ``.DS_Store`` and the like are skipped."""
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.name.isascii() and e.name.isdigit() and e.is_dir())


@dataclass
class Scan:
    """Collects the triplets of every split of one load together with the files that broke the rules, so that
    one load reports all problems at once, or drops them with a single warning per kind."""

    dataset: str  # display name, e.g. "RGBNT201"
    grammar: Grammar
    bad: list[str] = field(default_factory=list)  # .jpg paths whose names break the grammar
    missing: list[str] = field(default_factory=list)  # modality files absent for a triplet
    incomplete: int = 0  # triplets with at least one missing modality file

    def triplets(self, dirs: tuple[str, str, str], folder_id: str | None = None) -> list[Found]:
        """Triplets whose name exists in all three modality folders (the same folder thrice if stitched).

        Every folder is listed, so a file present only in NI or TI is caught too. ``folder_id`` is the name of
        the enclosing id folder that each filename must start with (MSVR310 ``VVVV/``).
        """
        listings = {d: list_jpgs(d) for d in dict.fromkeys(dirs)}
        found = []
        for name in sorted(set().union(*listings.values())):
            present = [name in listings[d] for d in dirs]
            fields = self.grammar.parse(name)
            if fields is None or (folder_id is not None and not name.startswith(f"{folder_id}_")):
                self.bad.append(os.path.join(dirs[present.index(True)], name))
            elif not all(present):
                self.missing.extend(
                    os.path.join(d, name) for d, ok in zip(dirs, present, strict=True) if not ok
                )
                self.incomplete += 1
            else:
                paths = (
                    os.path.join(dirs[0], name),
                    os.path.join(dirs[1], name),
                    os.path.join(dirs[2], name),
                )
                found.append(Found(name, paths, *fields))
        return found

    def settle(self, on_missing: str, on_bad_name: str) -> None:
        """Apply the policies: raise on the first kind of problem set to "error", else warn once per kind."""
        if self.bad:
            if on_bad_name == "error":
                raise MDReIDError(
                    f"{self.dataset}: {len(self.bad)} .jpg file(s) do not follow the name rule "
                    f"{self.grammar.form}: {_listing(self.bad)}; rename or remove them, or set "
                    "data.on_bad_name=skip (--on-bad-name skip) to ignore them"
                )
            log.warning(
                "%s: ignored %d .jpg file(s) that do not follow the name rule %s (data.on_bad_name=skip): %s",
                self.dataset,
                len(self.bad),
                self.grammar.form,
                _listing(self.bad),
            )
        if self.missing:
            if on_missing == "error":
                raise MDReIDError(
                    f"{self.dataset}: {len(self.missing)} modality file(s) are missing: "
                    f"{_listing(self.missing)}; restore them, or set data.on_missing=skip "
                    f"(--on-missing skip) to drop the {self.incomplete} incomplete triplet(s)"
                )
            log.warning(
                "%s: dropped %d triplet(s) with %d missing modality file(s) (data.on_missing=skip): %s",
                self.dataset,
                self.incomplete,
                len(self.missing),
                _listing(self.missing),
            )

    def records(
        self, found: list[Found], split: str, folder: str, labels: Mapping[int, int] | None, stitched: bool
    ) -> list[Record]:
        """Sorted records of one split; ``index`` is the position in that order, ``label`` -1 unless train."""
        if not found:
            raise MDReIDError(
                f"{self.dataset}: split folder {folder} holds no usable triplets; "
                f"expected .jpg files named {self.grammar.form}"
            )
        return [
            Record(
                paths=f.paths,
                pid=f.pid,
                camid=f.camid,
                sceneid=f.sceneid,
                label=labels[f.pid] if labels is not None else -1,
                index=i,
                split=split,
                stitched=stitched,
            )
            for i, f in enumerate(sorted(found, key=lambda f: (f.name, f.paths)))
        ]


def _listing(paths: list[str]) -> str:
    shown = ", ".join(paths[:MAX_LISTED])
    return shown + (f", ... ({len(paths) - MAX_LISTED} more)" if len(paths) > MAX_LISTED else "")


def require_dir(dataset: str, path: str) -> str:
    """``path`` if it is a folder; otherwise the download is incomplete and the error names what is absent."""
    if not os.path.isdir(path):
        raise MDReIDError(
            f"{dataset}: expected folder {path} is missing; the copy looks incomplete: re-extract the official "
            "archive without renaming its folders"
        )
    return path


def flat_modality_folders(scan: Scan, folder: str, names: tuple[str, str, str]) -> list[Found]:
    """A split of three flat modality folders (R, N, T) holding identically named files; a missing one
    means a broken copy."""
    dirs = tuple(require_dir(scan.dataset, os.path.join(folder, m)) for m in names)
    return scan.triplets(dirs)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Layout:
    """How one benchmark sits on disk; ``read_split`` turns a split folder into triplets via the scan."""

    name: str  # key in DATASETS, e.g. "rgbnt201"
    folders: tuple[str, ...]  # accepted benchmark folders under root, canonical first ("RGBNT100/rgbir")
    splits: Mapping[str, str]  # role (train, query, gallery) -> split folder; query and gallery may coincide
    grammar: Grammar
    junk_rule: str  # evaluation removal rule, "camera" or "scene"
    read_split: Callable[[Scan, str], list[Found]]
    stitched: bool = False
    val_query_every: int = 1  # the validation query: every image (1), or one in N per identity and camera

    @property
    def display(self) -> str:
        return self.folders[0].split("/")[0]

    def locate(self, root: str | Path) -> str:
        """The benchmark folder under ``root`` with every split folder present; else say which was expected."""
        root = os.path.abspath(os.path.expanduser(str(root)))
        contains = " or ".join(f"{f}/" for f in self.folders)
        base = next(
            (os.path.join(root, f) for f in self.folders if os.path.isdir(os.path.join(root, f))),
            None,
        )
        if base is None:
            expected = os.path.join(root, self.folders[0], next(iter(self.splits.values())))
            raise MDReIDError(
                f"{self.display}: expected {expected}; set data.root (or --root) to the folder that contains "
                f"{contains}{self._too_deep_hint(root)}"
            )
        for folder in dict.fromkeys(self.splits.values()):
            require_dir(self.display, os.path.join(base, folder))
        return base

    def _too_deep_hint(self, root: str) -> str:
        """If ``root`` already points inside the benchmark folder, name the parent that should be used."""
        parts = [*self.folders[0].split("/"), next(iter(self.splits.values()))]
        for depth in range(1, len(parts)):
            if os.path.isdir(os.path.join(root, *parts[depth:])):
                return f" (--root points inside the benchmark; use {Path(root).parents[depth - 1]})"
        return ""

    def load(self, root: str | Path, on_missing: str, on_bad_name: str) -> Benchmark:
        """Read all splits, apply the policies, relabel train by sorted raw pid, and build the Benchmark."""
        base = self.locate(root)
        scan = Scan(self.display, self.grammar)
        found = {
            folder: self.read_split(scan, os.path.join(base, folder))
            for folder in dict.fromkeys(self.splits.values())
        }
        scan.settle(on_missing, on_bad_name)
        train_folder = self.splits["train"]
        labels = {pid: i for i, pid in enumerate(sorted({f.pid for f in found[train_folder]}))}
        shared = {folder for folder in found if list(self.splits.values()).count(folder) > 1}
        by_folder: dict[str, list[Record]] = {}
        for role, folder in self.splits.items():
            if folder not in by_folder:
                by_folder[folder] = scan.records(
                    found[folder],
                    "test" if folder in shared else role,
                    os.path.join(base, folder),
                    labels if role == "train" else None,
                    self.stitched,
                )
        return Benchmark(
            name=self.name,
            root=base,
            train=by_folder[train_folder],
            query=by_folder[self.splits["query"]],
            gallery=by_folder[self.splits["gallery"]],
            junk_rule=self.junk_rule,
            val_query_every=self.val_query_every,
        )
