"""The spectral_dynamics notebook executes end to end (jupytext percent format, run in a fresh kernel), and its
numbers agree with independent expectations: the finite-width twin's top singular values, and learning-rate
transfer under μP."""

from __future__ import annotations

import json
from pathlib import Path

import jupytext
import nbclient
import nbformat

# Appended to the notebook and run in its kernel: numbers computed from the notebook's own results.
PROBE = r"""
import json as _json
import numpy as _np

_top = twin.spectrum.sel(t_spec=20).isel(i=0).mean("seed").values
_numbers = {
    "outlier_rel": (_top / theory.outlier_sv.sel(t=20, k=0).values - 1).tolist(),
    "best": {str(p): best.sel(parameterization=p).values.tolist() for p in best.parameterization.values},
}
print("NUMBERS " + _json.dumps(_numbers))
"""


def test_spectral_dynamics_notebook_executes(repo_root: Path) -> None:
    """Executes the notebook and checks its numbers (deep linear, μP, twin D = 100 with 2 seeds):

    * the leading outlier of each weight matrix at t = 20 against the twin's top singular value: measured −1.1 %
      and −0.5 %; bound 2 %. Planted bug: γ0 × 1.03 in the theory gives −2.3 % and fails;
    * learning-rate transfer (ν = 1, 4; η = 0.02, 0.08, 0.32): the best η is the same at both widths under μP
      (measured 0.08, 0.08) and moves under NTK (0.08 → 0.32). Swapping μP and NTK fails.
    """
    nb = jupytext.read(repo_root / "notebooks" / "spectral_dynamics.py")
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(repo_root)}}
    ).execute()
    text = "".join(o.get("text", "") for o in nb.cells[-1].get("outputs", []))
    num = json.loads(text.split("NUMBERS ", 1)[1])
    assert max(abs(x) for x in num["outlier_rel"]) < 0.02, num
    mup, ntk = num["best"]["mup"], num["best"]["ntk"]
    assert len(set(mup)) == 1 and len(set(ntk)) > 1, num
