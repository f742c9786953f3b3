"""The sgd_spectra notebook executes end to end (jupytext percent format, run in a fresh kernel)."""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbclient


def test_sgd_spectra_notebook_executes(repo_root: Path) -> None:
    nb = jupytext.read(repo_root / "notebooks" / "sgd_spectra.py")
    nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(repo_root)}}
    ).execute()
    outputs = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "stationary E Σλ" in outputs and "phase_name" in outputs
