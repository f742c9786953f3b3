"""The diagonal_linear notebook executes end to end (jupytext percent format, run in a fresh kernel)."""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbclient


def test_diagonal_linear_notebook_executes(repo_root: Path) -> None:
    nb = jupytext.read(repo_root / "notebooks" / "diagonal_linear.py")
    nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(repo_root)}}
    ).execute()
    outputs = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "final test loss: DMFT" in outputs and "fixed-point test loss" in outputs and "T = 40" in outputs
    assert "converged True" in outputs and "diverged False" in outputs
