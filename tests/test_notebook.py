"""The quickstart notebook runs top to bottom (shrunk to seconds) and shows its table, heatmap and ranked list."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest
from ipykernel.kernelspec import install as install_kernelspec
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"
KERNEL = "mdreid-test"
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # rich colours its console output
# The shrink of conftest.TINY_OVERRIDES: seconds instead of the notebook's few minutes.
TINY_PARAMETERS = {
    "IDS": 12,
    "IMAGE_SIZE": (64, 32),
    "EPOCHS": 2,
    "BATCH_SIZE": 16,
    "WIDTH": 64,
    "LAYERS": 2,
    "HEADS": 2,
    "PATCH": 16,
    "EMBED_DIM": 32,
}


def assigned_names(source: str) -> set[str]:
    """Names bound at the top level of a cell (``A = 1`` and ``A, B = 1, 2``)."""
    names = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                elts = target.elts if isinstance(target, ast.Tuple) else [target]
                names.update(e.id for e in elts if isinstance(e, ast.Name))
    return names


def with_parameters(nb: nbformat.NotebookNode, values: dict[str, object]) -> nbformat.NotebookNode:
    """Insert a cell overriding ``values`` right after the cell tagged ``parameters`` (papermill's convention).

    Every overridden name must be a parameter, so a renamed one fails here instead of being ignored.
    """
    (position,) = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    unknown = set(values) - assigned_names(nb.cells[position].source)
    assert not unknown, f"not parameters of {NOTEBOOK.name}: {sorted(unknown)}"
    source = "\n".join(f"{name} = {value!r}" for name, value in values.items())
    nb.cells.insert(
        position + 1, nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    )
    return nb


def cell_outputs(nb: nbformat.NotebookNode, cell_id: str) -> tuple[str, int]:
    """All text a cell printed or displayed (colours stripped), and how many PNG images it displayed."""
    (cell,) = [c for c in nb.cells if c.get("id") == cell_id]
    text, images = [], 0
    for out in cell.outputs:
        text.append(out.get("text", ""))
        data = out.get("data", {})
        text.append(data.get("text/plain", ""))
        images += "image/png" in data
    return ANSI.sub("", "".join(text)), images


def test_notebook_is_stored_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.slow
def test_quickstart_runs_and_shows_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A kernelspec of THIS interpreter, found first through JUPYTER_PATH: never a user's or the system's.
    install_kernelspec(kernel_name=KERNEL, prefix=str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter" / "share" / "jupyter"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    work = tmp_path / "quickstart"
    nb = with_parameters(nbformat.read(NOTEBOOK, as_version=4), {**TINY_PARAMETERS, "WORKDIR": str(work)})

    NotebookClient(
        nb, kernel_name=KERNEL, timeout=300, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()

    data_text, _ = cell_outputs(nb, "generate")
    assert re.search(r"train: \d+ triplets of 8 identities", data_text), data_text
    assert cell_outputs(nb, "triplet")[1] == 1
    # validation (held-out training identities) after the last epoch, then the reloaded checkpoint on test
    epochs = TINY_PARAMETERS["EPOCHS"]
    validation = re.search(rf"validation score after {epochs} epochs: ([\d.]+)", cell_outputs(nb, "train")[0])
    table, _ = cell_outputs(nb, "evaluate")
    test = re.search(r"score = \(mAP \+ R1\) / 2 of RNT->RNT: ([\d.]+)", table)
    assert validation and test, table
    assert 0 < float(validation[1]) <= 100 and 0 < float(test[1]) <= 100
    assert table.count("│ RNT ") == 2, "the mAP and R1 tables need their RNT query row"
    for cell_id, figure in (("heatmap", "heatmap_mAP.png"), ("ranked", "ranked_R-N.png")):
        assert cell_outputs(nb, cell_id)[1] == 1, f"cell {cell_id} displayed no image"
        assert (work / "figures" / figure).stat().st_size > 0
