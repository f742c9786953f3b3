"""Extensive outputs in the claims gallery: the two jobs (`figures/eo_width`, `figures/eo_outputs`) run at their
`--quick` size through `dmft gallery`, write a figure and a caption with measured numbers, and the numbers say what
the claims say.

Measured at the quick size (D = 40, T = 11, 2 seeds, t = 10, W⁰/√N):
* eo_width, ν = 2, 8: μP top singular value 2.246, 2.274 (ν = ∞ theory 2.388), median 1.135, 1.227 (1.212);
  NTK top 1.740, 1.053, median 0.884, 0.699 (lazy limit σ = 0.6). Planted bug: the twin's NTK rule replaced by μP
  (effective γ0 = γ0 at every ν) — the NTK drift vanishes and the test fails.
* eo_outputs (slow), C = 1, 40 at ν = 2: C = 1: 1 singular value above the initial edge 1.024, median ×1.021;
  C = 40: 21 of 40 above, median ×2.109 (ν = ∞ theory median 1.212, twin 1.135). Planted bug: the loss averaged
  over channels instead of summed (step η/C) — the C = D bulk no longer moves and the test fails.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from dmft import gallery
from dmft.cli import main


def _record(out: Path, claim: str) -> dict:
    rec = json.loads((out / f"{claim}.json").read_text())
    assert "error" not in rec and rec["quick"], rec
    assert (out / rec["png"]).stat().st_size > 10_000
    assert all(v is None or math.isfinite(v) for v in rec["numbers"].values())
    return rec


def test_width_job_mup_settles_ntk_drifts_to_lazy(tmp_path: Path) -> None:
    assert main(["gallery", "--quick", "--only", "eo_width", "--out", str(tmp_path)]) == 0
    n = _record(tmp_path, "extensive_edge_width")["numbers"]
    assert n["ntk_edge_theory"] == pytest.approx(0.6) and n["mup_edge_theory"] > 2.0
    mup_move = abs(n["mup_edge_nu8"] / n["mup_edge_nu2"] - 1)  # measured 1.2 %
    ntk_move = abs(n["ntk_edge_nu8"] / n["ntk_edge_nu2"] - 1)  # measured 39 %
    assert mup_move < 0.05 and ntk_move > 0.25
    assert 0.6 < n["ntk_edge_nu8"] < n["ntk_edge_nu2"] and 0.6 < n["ntk_median_nu8"] < n["ntk_median_nu2"]
    # μP sits next to the ν = ∞ theory (the quick twin is small: D = 40, t = 10)
    assert abs(n["mup_edge_gap_widest"]) < 0.08 and abs(n["mup_median_gap_widest"]) < 0.03


@pytest.mark.slow
def test_outputs_job_outliers_against_restructured_bulk(tmp_path: Path) -> None:
    assert main(["gallery", "--quick", "--only", "eo_outputs", "--out", str(tmp_path)]) == 0
    rec = _record(tmp_path, "extensive_outputs")
    n = rec["numbers"]
    cs = gallery.JOBS["eo_outputs"].quick["sweep.extensive_output.outputs"]
    few, many = cs[0], cs[-1]
    assert n[f"C{few}_above_edge"] == few and abs(n[f"C{few}_median_ratio"] - 1) < 0.05
    assert n[f"C{many}_above_edge"] > 0.4 * many and n[f"C{many}_median_ratio"] > 1.8
    assert abs(n["C1_outlier_twin"] / n["C1_outlier_nu_inf"] - 1) < 0.05
    assert f"C = {many}: " in rec["caption"] and "median" in rec["caption"]
