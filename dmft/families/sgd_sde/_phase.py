"""Phases of SGD on the 2509.01349 network (theory/sgd_sde.md §5–§6): the drift/Coulomb criterion, the
observables that tell the three phases apart, and the predicted boundaries.

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

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float
from scipy import special

from solvers.linalg import eigh, svdvals

from . import _tanh_net
from ._problem import Hyper, Problem

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

PHASES = ("ordered", "paramagnetic", "jammed")


def phase_criterion(
    w: Float[Array, "h f"],
    test: _tanh_net.TanhData,
    theta: Array | float,
    sigma_w: Array | float,
    release_indexing: bool = False,
) -> dict[str, Array]:
    """K_t, V_t, Δ̄, the ordered flag and T_c = K_t Δ̄ / V_t (formulas in the module docstring)."""
    h, f = w.shape
    g = _tanh_net.per_sample_descent(w, test)  # (p, h, f)
    wg = jnp.einsum("ij,pkj->pik", w, g)
    dx = wg + jnp.swapaxes(wg, 1, 2)
    _, u = eigh(w @ w.T)
    u = u[:, ::-1]  # descending eigenvalues
    rot = jnp.einsum("ai,pab,bj->pij", u, dx, u)
    k_tilde = jnp.mean(rot, axis=0)
    v_tilde = jnp.var(rot, axis=0)
    drift_gap = jnp.abs(k_tilde[0, 0]) - jnp.abs(k_tilde[h - 1, h - 1])
    k = jnp.arange(1, h - 1)
    second = h - k if release_indexing else h - 1 - k
    coulomb_gap = 2 * v_tilde[0, h - 1] / (h - 1) + jnp.sum(
        (v_tilde[0, k] + v_tilde[h - 1, second]) / k.astype(w.dtype)
    )
    mean_spacing = 4 * sigma_w**2 / (math.sqrt(f / h) * (h - 1))
    return {
        "drift_gap": drift_gap,
        "coulomb_gap": coulomb_gap,
        "mean_spacing": jnp.asarray(mean_spacing),
        "ordered": drift_gap >= theta * coulomb_gap / mean_spacing,
        "tc_estimate": drift_gap * mean_spacing / coulomb_gap,
    }


def phase_observables(
    w0: Float[Array, "h f"], w: Float[Array, "h f"], test: _tanh_net.TanhData
) -> dict[str, Array]:
    """Overlap q = ⟨s_init·s_final⟩/(n_test h), its normalised form, the alignment m = ⟨ĥ, ŝ⟩ with the teacher
    field h_n = Zᵀ y_t,n (Frobenius-normalised), and the preactivation variance σ_z² = mean (W h⁰)²."""
    s0, _ = _tanh_net.forward(w0, test.h0, test.z)
    s1, _ = _tanh_net.forward(w, test.h0, test.z)
    field = test.y @ test.z
    q = jnp.mean(s0 * s1)
    return {
        "overlap": q,
        "overlap_normalized": q / jnp.sqrt(jnp.mean(s0**2) * jnp.mean(s1**2)),
        "alignment": jnp.sum(field * s1) / jnp.sqrt(jnp.sum(field**2) * jnp.sum(s1**2)),
        "preact_var": jnp.mean((test.h0 @ w.T) ** 2),
    }


def spacing_growth(sv: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """λ_L = ln(ū(τ_f)/ū(0))/τ_f, ū the mean nearest-neighbour spacing of x = s² (eigenvalues of WWᵀ).

    ``sv``: (..., t, i) descending singular values; returns shape (...).
    """
    x = np.asarray(sv, dtype=float) ** 2
    gaps = -np.diff(x, axis=-1)  # positive, length N-1
    left = np.concatenate([np.full(gaps.shape[:-1] + (1,), np.inf), gaps], axis=-1)
    right = np.concatenate([gaps, np.full(gaps.shape[:-1] + (1,), np.inf)], axis=-1)
    u = np.mean(np.minimum(left, right), axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(u[..., -1] / u[..., 0]) / tau[-1]


def classify(ordered: np.ndarray, diverged: np.ndarray, preact_var: np.ndarray) -> np.ndarray:
    """Phase code per run: index into :data:`PHASES` (rule in the module docstring)."""
    below_tc = np.asarray(ordered, bool) & ~np.asarray(diverged, bool)
    saturated = np.asarray(preact_var) > 0.5
    return np.where(below_tc, np.where(saturated, 2, 0), 1).astype(np.int8)


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


def final_observables(
    drift: str, prob: Problem, w_final: Float[Array, "h f"], hyper: Hyper, sigma_w: Array | float
) -> dict[str, Array]:
    """What SDE members and SGD runs report about their final weights: the teacher's singular values (teacher
    drifts) and, for ``phase_teacher``, the phase criterion and observables at θ = η/B."""
    extra: dict[str, Array] = {}
    if drift != "noise":
        extra["teacher_sv"] = svdvals(prob.w_star)
    if drift == "phase_teacher":
        theta = hyper.lr / hyper.batch_size
        extra.update(
            {
                **phase_criterion(w_final, prob.test, theta, sigma_w),
                **phase_observables(prob.w0, w_final, prob.test),
            }
        )
        extra.pop("mean_spacing")
    return extra
