"""README's layout map is the tree: every folder and module of the package, and every top-level folder, is in
it under its own name, and every name the map gives exists. A map that drifts from the code misleads the
newcomer it is written for."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "mdreid"
NAME = re.compile(r"[\w.]+/|\w+\.py\b|\w+")


def layout_block(readme: str) -> list[str]:
    """The lines of the code block under README's "## Layout" heading."""
    section = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```", 2)[1].splitlines()[1:]


def package_entries(lines: list[str]) -> dict[str, str]:
    """Each entry of the ``src/mdreid/`` part (a folder ``x/``, or root modules ``a.py, b.py``) -> its text,
    continuation lines (indented further) included."""
    start = lines.index("src/mdreid/")
    entries: dict[str, str] = {}
    key = ""
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        if line[2] != " ":
            key = re.split(r"\s{2,}", line.strip())[0]
        entries[key] = entries.get(key, "") + " " + line.strip()
    return entries


def map_problems(readme: str, package: Path, root: Path) -> list[str]:
    lines = layout_block(readme)
    entries = package_entries(lines)
    problems = []
    folders = {k for k in entries if k.endswith("/")}
    root_text = " ".join(v for k, v in entries.items() if not k.endswith("/"))
    root_names = set(re.findall(r"\b(\w+\.py)\b", root_text))
    for path in sorted(package.iterdir()):
        if path.name.startswith(("_", ".")) and path.name != "__init__.py" or path.name == "__pycache__":
            continue
        if path.is_dir() and (path / "__init__.py").exists():
            if f"{path.name}/" not in folders:
                problems.append(f"src/mdreid/{path.name}/ is not in the map")
                continue
            words = set(NAME.findall(entries[f"{path.name}/"]))
            for module in sorted(path.rglob("*.py")):
                rel = module.relative_to(path)
                if module.name in ("__init__.py", "__main__.py"):
                    continue
                if module.stem not in words and module.name not in words and f"{rel.parts[0]}/" not in words:
                    problems.append(f"src/mdreid/{path.name}/{rel} is not in its folder's entry")
        elif path.suffix == ".py" and path.name not in root_names:
            problems.append(f"src/mdreid/{path.name} is not in the map")
    for name in sorted(root_names):
        if not (package / name).is_file():
            problems.append(f"the map names src/mdreid/{name}, which does not exist")
    for folder in sorted(folders):
        if not (package / folder).is_dir():
            problems.append(f"the map names src/mdreid/{folder}, which does not exist")
    top = {line.split()[0] for line in lines if line and not line.startswith(" ")}
    for path in sorted(root.iterdir()):
        if path.is_dir() and not path.name.startswith(".") and f"{path.name}/" not in top:
            if path.name in ("src", *IGNORED_TOP):
                continue
            problems.append(f"{path.name}/ is not in the map")
    for entry in sorted(top - {"src/mdreid/"}):
        if entry.endswith("/") and not (root / entry).is_dir():
            problems.append(f"the map names {entry}, which does not exist")
    return problems


# folders a checkout gains by being used, never committed
IGNORED_TOP = ("outputs", "data", "logs", "wandb", "build", "dist")


def test_readme_layout_map_matches_the_tree() -> None:
    problems = map_problems((ROOT / "README.md").read_text(), PACKAGE, ROOT)
    assert not problems, problems


def test_the_map_check_finds_a_missing_module_and_a_name_that_does_not_exist(tmp_path: Path) -> None:
    package = tmp_path / "src" / "mdreid"
    for path in (
        "__init__.py",
        "train.py",
        "data/__init__.py",
        "data/readers/__init__.py",
        "data/pk_sampler.py",
        "data/readers/msvr310.py",
        "data/batch.py",
    ):
        (package / path).parent.mkdir(parents=True, exist_ok=True)
        (package / path).write_text("")
    (tmp_path / "conf").mkdir()
    (tmp_path / "scripts").mkdir()
    readme = (
        "# x\n\n## Layout\n\n```\nsrc/mdreid/\n  __init__.py the API\n  train.py, eval.py  the entry points\n"
        "  data/       readers/ (one per benchmark), pk_sampler\n              (sampling)\nconf/  configs\n"
        "notebooks/  gone\n```\n\n## Next\n"
    )
    assert map_problems(readme, package, tmp_path) == [
        "src/mdreid/data/batch.py is not in its folder's entry",
        "the map names src/mdreid/eval.py, which does not exist",
        "scripts/ is not in the map",
        "the map names notebooks/, which does not exist",
    ]
