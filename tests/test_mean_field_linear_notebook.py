"""The mean_field notebook executes end to end (jupytext percent format, run in a fresh kernel), and its numbers
agree with independent expectations: the width-512 twin, the lazy oracle, the Monte Carlo theory's twins."""

from __future__ import annotations

import json
from pathlib import Path

import jupytext
import nbclient
import nbformat

# Appended to the notebook and run in its kernel: numbers computed from the notebook's own results (the two NTK
# solves reuse the notebook's compiled programs).
PROBE = r"""
import json as _json
import numpy as _np

_ts = twin.t_spec.values
_th = theory.outlier_sv.sel(layer=[1, 2], k=0, t=_ts).values
_tw = twin.top_sv.sel(layer=[1, 2], k=0).mean("seed").transpose("layer", "t_spec").values
_rel = _tw / _th - 1  # NaN where the theory has no outlier yet
_ntk = {}
for _n in (256, 65536):
    _ds = dmft.solve(cfg.replace({"solver.outliers": False, "model.parameterization": "ntk",
                                  "model.gamma0": 3.0 * np.sqrt(256), "simulate.width": _n}))
    _ntk[_n] = float(_ds.train_loss[-1])
_lazy = float(lazy.train_loss[-1])
_numbers = {
    "train_gap": float(_np.mean(twin.train_loss.mean("seed").values[1:] / theory.train_loss.values[1:] - 1)),
    "outlier_max": float(_np.nanmax(_np.abs(_rel))),
    "outlier_last": _np.abs(_rel[:, -1]).tolist(),
    "ntk_to_lazy": [abs(_ntk[256] - _lazy), abs(_ntk[65536] - _lazy)],
    "relu_gap_2048": float(gap),
}
print("NUMBERS " + _json.dumps(_numbers))
"""


def test_mean_field_notebook_executes(repo_root: Path) -> None:
    """Executes the notebook and checks its numbers (linear φ, depth 3, γ0 = 3, twin N = 512 with 2 seeds):

    * train loss, twin over theory, time-averaged: measured +13.4 % (the two seeds differ by 13 %); bound 20 %;
    * leading outliers of W¹/√N and W²/√N against the twin's top singular values: at the last record measured
      0.35 % and 0.61 % (bound 1 %), at every record with an outlier at most 3.7 % (bound 5 %; largest just after
      the outlier leaves the edge);
    * NTK (γ0 = γ̃0/√N): the theory tends to the lazy oracle, |final loss − lazy| 0.590 at N = 256 and 0.0046 at
      N = 65536 (bound: ratio below 0.02);
    * two-layer ReLU, Monte Carlo theory (S = 4000) against N = 2048 networks (4 seeds): RMS gap of the outputs
      measured 0.0067; bound 0.008.

    Planted bugs: γ0 × 1.03 in the theory (not in the twin) gives a train gap of 23.5 % and a last-record outlier
    gap of 1.3 % (W²), and fails; the Monte Carlo theory's outputs f × 1.03 give a ReLU gap of 0.0091 and fail.
    """
    nb = jupytext.read(repo_root / "notebooks" / "mean_field.py")
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(repo_root)}}
    ).execute()
    text = "".join(o.get("text", "") for o in nb.cells[-1].get("outputs", []))
    num = json.loads(text.split("NUMBERS ", 1)[1])
    assert abs(num["train_gap"]) < 0.2, num
    assert max(num["outlier_last"]) < 0.01 and num["outlier_max"] < 0.05, num
    far, near = num["ntk_to_lazy"]
    assert near < 0.02 * far, num
    assert num["relu_gap_2048"] < 0.008, num
