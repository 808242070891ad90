"""One aligned RGB/NIR/TIR triplet on disk, and the three splits of a benchmark."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Record:
    """One triplet as read from disk.

    ``paths`` holds the RGB, NIR and TIR files in canonical order; an empty path is a modality the sample
    does not have (manifests of unpaired data). For a stitched dataset (RGBNT100) the three entries are the
    same 768x128 file and ``stitched`` is True: modality m is panel m.
    """

    paths: tuple[str, str, str]
    pid: int  # raw identity from the filename
    camid: int  # 0-based camera / view id
    sceneid: int = -1  # MSVR310 scene id; -1 elsewhere
    label: int = -1  # train label 0..C-1 (sorted raw pids); -1 outside the train split
    index: int = -1  # position in its split's sorted listing
    split: str = "train"  # "train", "val", "query", "gallery" or "test" (RGBNT201: query = gallery)
    stitched: bool = False

    @property
    def present(self) -> tuple[bool, bool, bool]:
        """Which of R, N, T the sample has."""
        return tuple(bool(p) for p in self.paths)  # type: ignore[return-value]

    @property
    def name(self) -> str:
        """The basename of its first file, which identifies a triplet inside its split folder."""
        return next(p for p in self.paths if p).rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Benchmark:
    """The splits of one benchmark. ``query`` and ``gallery`` (the test split) may be the same list (RGBNT201).

    ``val`` is the validation split (``data.val_split``): a Benchmark of its own with only a query and a
    gallery, or None. ``val_query_every`` is how the dataset forms a query from a gallery: 1 = every image
    queries the others (RGBNT201, MSVR310), 5 = one image in five of each identity and camera (RGBNT100).
    """

    name: str
    root: str
    train: list[Record] = field(default_factory=list)
    query: list[Record] = field(default_factory=list)
    gallery: list[Record] = field(default_factory=list)
    # junk rule for evaluation: "camera" (same pid & camera) or "scene" (same pid & scene; MSVR310)
    junk_rule: str = "camera"
    val: Benchmark | None = None
    val_query_every: int = 1

    @property
    def query_is_gallery(self) -> bool:
        return self.query is self.gallery

    @property
    def num_classes(self) -> int:
        return len({r.label for r in self.train})

    @property
    def num_cameras(self) -> int:
        """Camera ids of the training split, held-out identities included: the size of the camera-embedding
        table (SIE), the same whether or not identities are held out for validation."""
        held_out = [r for r in self.val.gallery if r.split == "val"] if self.val is not None else []
        return max((r.camid for r in (*self.train, *held_out)), default=-1) + 1
