"""Pair and execute the notebooks: ``python docs/execute_notebooks.py [NAME ...]`` (default: all).

The sources are ``notebooks/*.py`` (jupytext percent); each is executed in a fresh kernel from a temporary folder
(so that it runs from anywhere, with the installed package) and written to its paired ``notebooks/NAME.ipynb``
with outputs, which the documentation site renders. Headless: figures are stored as PNG outputs.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import jupytext
import nbclient

ROOT = Path(__file__).resolve().parents[1]


def execute(name: str, timeout: int = 1200) -> Path:
    src = ROOT / "notebooks" / f"{name}.py"
    nb = jupytext.read(src)
    nb.metadata.setdefault("jupytext", {})["formats"] = "ipynb,py:percent"
    with tempfile.TemporaryDirectory() as cwd:
        nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": cwd}}).execute()
    out = src.with_suffix(".ipynb")
    jupytext.write(nb, out)
    return out


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    names = sys.argv[1:] or sorted(p.stem for p in (ROOT / "notebooks").glob("*.py"))
    for n in names:
        t0 = time.perf_counter()
        print(f"{execute(n)} ({time.perf_counter() - t0:.0f} s)", flush=True)
