"""The diagonal_linear notebook executes end to end (jupytext percent format, run in a fresh kernel), and its
numbers agree with independent expectations: the exact first step and the trained networks."""

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

def _normalised_gap(th, tw, floor):
    # time-averaged relative gap of the twin's seed mean, each curve divided by its own t = 0 value (less the
    # noise floor): the realised teacher norm |β*|²/d of a d = 500 network is off by ≈ 17 % per seed
    thn = (th - floor) / (th[0] - floor)
    twn = (tw - floor) / (tw[:, :1] - floor)
    return float(_np.mean(twn.mean(0)[1:] / thn[1:] - 1))

_numbers = {
    "test_gap": _normalised_gap(theory.test_loss.values, twin.test_loss.values, 0.5 * cfg.data.noise**2),
    "t1_theory": float(theory.test_loss[1]),
    "t1_oracle": float(dl.t1_test_loss(dl.params_from_config(cfg), cfg.model.form)),
    "t1_mcse": float(theory.test_loss_mcse[1]),
}
print("NUMBERS " + _json.dumps(_numbers))
"""


def test_diagonal_linear_notebook_executes(repo_root: Path) -> None:
    """Executes the notebook and checks its numbers.

    * t = 1 test loss of the DMFT against the exact one-step oracle (``t1_test_loss``, a closed form of the
      theory notes §6.2), within 4 Monte Carlo standard errors (measured 0.3).
    * DMFT against the twin (d = 500, 2 seeds) over the whole run, each curve normalised by its t = 0 value:
      measured time-averaged gap of the test loss −5.5 % (the two seeds −4.6 %, −6.4 %). Bound 8 %. Planted bug:
      the DMFT's sample noise ρ × 1.03 gives −11.0 % and fails.

    The first step at a = 0.1 moves β too little to see a 3 % error (the same plant leaves it unchanged); it checks
    the Dataset against the closed form. The sweep's twins (d = 500, the same 2 seeds at every a) are not compared:
    their normalised gaps, −3, −8, −15, −14 % at a = 0.01, 0.1, 1, 3, are mostly seed noise (16 other seeds of d = 500
    give +2.9 ± 1.7 % at a = 3).
    """
    nb = jupytext.read(repo_root / "notebooks" / "diagonal_linear.py")
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(repo_root)}}
    ).execute()
    text = "".join(o.get("text", "") for o in nb.cells[-1].get("outputs", []))
    num = json.loads(text.split("NUMBERS ", 1)[1])
    assert abs(num["t1_theory"] - num["t1_oracle"]) < 4 * num["t1_mcse"], num
    assert abs(num["test_gap"]) < 0.08, num
