"""The spectral_dynamics notebook executes end to end (jupytext percent format, run in a fresh kernel)."""

from pathlib import Path

import jupytext
import nbclient


def test_spectral_dynamics_notebook_executes(repo_root: Path) -> None:
    nb = jupytext.read(repo_root / "notebooks" / "spectral_dynamics.py")
    nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(repo_root)}}
    ).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "outliers at t = 20 (theory)" in outputs and "escape steps" in outputs
