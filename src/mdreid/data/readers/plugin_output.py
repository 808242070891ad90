"""What a dataset reader of your own must return, checked once after it ran: the rest of the pipeline trusts
a ``Benchmark`` (labels index the classifier, camera ids the camera embedding), so a reader that breaks a rule
stops the run in one line naming it, not with an index error deep inside a training step."""

from __future__ import annotations

from collections.abc import Sequence

from mdreid.data.records import Benchmark, Record
from mdreid.plugins import Plugin
from mdreid.process.errors import MDReIDError

ROLES = ("train", "query", "gallery")


def _record_problem(record: object, scene: bool) -> str | None:
    """What is wrong with one record (``scene``: an evaluation record under the scene rule), or None."""
    if not isinstance(record, Record):
        return f"a {type(record).__name__} instead of a mdreid.data.records.Record"
    paths = record.paths
    if not isinstance(paths, tuple | list) or len(paths) != 3 or not all(isinstance(p, str) for p in paths):
        return f"paths={paths!r}: give the R, N and T files, an empty string for a missing one"
    if not any(paths):
        return "no file at all in paths"
    if not isinstance(record.camid, int) or record.camid < 0:
        return f"camid={record.camid!r} for {record.name}: camera ids are integers from 0"
    if scene and (not isinstance(record.sceneid, int) or record.sceneid < 0):
        return f"sceneid={record.sceneid!r} for {record.name}: the scene junk rule needs scene ids from 0"
    return None


def _label_problem(train: Sequence[Record]) -> str | None:
    """Training labels must be 0..C-1 over the sorted training identities."""
    labels = {pid: i for i, pid in enumerate(sorted({r.pid for r in train}))}
    wrong = next((r for r in train if r.label != labels[r.pid]), None)
    if wrong is None:
        return None
    return (
        f"training label {wrong.label} for identity {wrong.pid} ({wrong.name}), expected {labels[wrong.pid]}: "
        f"labels are 0..{len(labels) - 1} in the order of the sorted training identities "
        "(relabel the records you keep)"
    )


def check_reader_output(bench: object, plugin: Plugin) -> Benchmark:
    """``bench`` if the reader ``plugin`` returned a valid benchmark, else one line naming the reader, the
    broken rule and the fix."""
    junk = plugin.meta["junk_rule"]
    problem: str | None = None
    if not isinstance(bench, Benchmark):
        problem = f"a {type(bench).__name__} instead of a mdreid.data.records.Benchmark"
    elif bench.name != plugin.name:
        problem = f"Benchmark(name={bench.name!r}); name it {plugin.name!r}, the name it is registered under"
    elif bench.junk_rule != junk:
        problem = f"junk_rule={bench.junk_rule!r} but it is registered with {junk!r}; make them agree"
    else:
        empty = [role for role in ROLES if not getattr(bench, role)]
        if empty:
            problem = f"no {' and no '.join(empty)} records; every role needs at least one"
        else:
            records = (
                (r, junk == "scene" and role != "train") for role in ROLES for r in getattr(bench, role)
            )
            problem = next((p for r, scene in records if (p := _record_problem(r, scene))), None)
            problem = problem or _label_problem(bench.train)
    if problem is not None:
        raise MDReIDError(
            f"the dataset reader {plugin.name!r} ({plugin.path}) returned {problem}; fix the reader "
            "(docs/extending.md, what a reader must get right)"
        )
    return bench
