"""Phases of SGD on the 2509.01349 network (theory/sgd_sde.md §5–§6): the predicted boundaries. The criterion, the
observables and the classification rule are measured on theory and twin alike (:mod:`._problem_phase`,
re-exported here).

**Criterion** (evaluated at the final weights on fresh test inputs). With g_n the per-sample descent
direction, dX_n = W g_nᵀ + g_n Wᵀ, U the eigenvectors of X = WWᵀ sorted by descending eigenvalue, K̃ = Uᵀ
mean_n(dX_n) U and Ṽ_ij = Var_n[(Uᵀ dX_n U)_ij]:

    K_t = |K̃_11| − |K̃_hh|,    V_t = 2Ṽ_{1,h}/(h − 1) + Σ_{k=1}^{h−2} (Ṽ_{1,1+k} + Ṽ_{h,h−k})/k,
    Δ̄ = 4σ_W²/(√r (h − 1)),   ordered ⇔ K_t ≥ Θ V_t/Δ̄,   Θ = η/B,    (h = n_h, r = n_f/n_h)

so T_c = K_t Δ̄/V_t is the temperature at which the point would flip. ``release_indexing`` uses Ṽ_{h,h−k+1}
(the released code's apparent off-by-one) instead of Ṽ_{h,h−k}.

**Three phases** (operational rule following the note's map: the criterion separates ordered from
paramagnetic, and below T_c the jammed phase is the one whose soft spins stay saturated):

* paramagnetic: the criterion fails, or the run diverged (the weights diffused to large values);
* jammed: the criterion holds but the final preactivation variance σ_z² = mean (W h⁰)² exceeds ½, where the
  density of tanh z turns bimodal (tanh saturated, vanishing gradient);
* ordered: the criterion holds and σ_z² ≤ ½.

**Predicted boundaries**: the jammed/ordered line where σ_z²(σ_W) = ½ at initialisation, σ_z² = c σ_W² with c
= E tanh²(g), g ~ N(0, |x|²/3), x ~ N(0, I_3). c = 0.344, so 1/σ_W = √(2c) ≈ 0.83 (the theory note's c ≈ 0.39
is E tanh²(N(0, 1)): it drops the fluctuation of |x|²/3 ~ χ²₃/3, and tanh² is concave in the variance). The
naive identification σ_z² = σ_W² gives 1/σ_W = √2, drawn too. T_c(σ_W) comes from contours of the ordered
fraction P_ord.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from ._problem_phase import PHASES as PHASES
from ._problem_phase import classify as classify
from ._problem_phase import phase_criterion as phase_criterion
from ._problem_phase import phase_observables as phase_observables
from ._problem_phase import spacing_growth as spacing_growth

__all__ = [
    "PHASES",
    "phase_criterion",
    "phase_observables",
    "spacing_growth",
    "classify",
    "soft_spin_pdf",
    "preactivation_factor",
    "jammed_boundary",
]


def soft_spin_pdf(phi: np.ndarray, var: float) -> np.ndarray:
    """Density of φ = tanh z, z ~ N(0, σ_z²): exp(−artanh²φ/(2σ_z²))/((1 − φ²)√(2πσ_z²)); bimodal iff σ_z² >
    ½."""
    phi = np.asarray(phi, dtype=float)
    return np.exp(-(np.arctanh(phi) ** 2) / (2 * var)) / ((1 - phi**2) * math.sqrt(2 * math.pi * var))


def preactivation_factor(order: int = 64) -> float:
    """c = E tanh²(√(u/3) z) with u ~ χ²_3 and z ~ N(0, 1), so that σ_z² = c σ_W² at initialisation.

    Gauss–Hermite in z and generalised Gauss–Laguerre (u/2 ~ Gamma(3/2)) in u.
    """
    z, wz = special.roots_hermitenorm(order)
    wz = wz / wz.sum()
    v, wv = special.roots_genlaguerre(order, 0.5)
    wv = wv / wv.sum()
    u = 2 * v
    vals = np.tanh(np.sqrt(u[:, None] / 3) * z[None, :]) ** 2
    return float(wv @ vals @ wz)


def jammed_boundary() -> dict[str, float]:
    """1/σ_W of the jammed/ordered line: ``soft_spin`` = √(2c) (σ_z² = ½ with σ_z² = cσ_W²); ``naive`` =
    √2."""
    return {"soft_spin": math.sqrt(2 * preactivation_factor()), "naive": math.sqrt(2.0)}
