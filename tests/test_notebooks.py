"""The notebooks run headless (nbclient) in CI mode, end to end, each ending with cells that assert;
and they are kept in git without outputs."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_the_five_notebooks_are_there_without_outputs():
    assert [p.name for p in NOTEBOOKS] == ["01_compare_methods.ipynb", "02_gpt_in_context.ipynb",
                                           "03_bert_fill_mask.ipynb", "04_speech.ipynb", "05_grid.ipynb"]
    for path in NOTEBOOKS:
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{path.name}: strip the outputs before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_ci_mode(path, tmp_path, monkeypatch):
    monkeypatch.setenv("SSL_ZOO_NOTEBOOK_CI", "1")
    monkeypatch.setenv("SSL_ZOO_NOTEBOOK_OUT", str(tmp_path))
    book = nbformat.read(path, as_version=4)
    NotebookClient(book, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    last = book.cells[-1]
    assert "all checks passed" in "".join(o.get("text", "") for o in last.outputs)
