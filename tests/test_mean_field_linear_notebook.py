"""The mean_field notebook executes end to end (jupytext percent format, run in a fresh kernel)."""

from pathlib import Path

import jupytext
import nbclient


def test_mean_field_notebook_executes(repo_root: Path) -> None:
    nb = jupytext.read(repo_root / "notebooks" / "mean_field.py")
    nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(repo_root)}}
    ).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "leading outlier of W^1/√N (theory)" in outputs and "lazy oracle" in outputs and "NTK, N = 65536" in outputs
    assert "ReLU, N = 2048" in outputs and "leading outlier at γ0 = 1, 3" in outputs
