"""Problem definition (shared by theory and twin): what is measured on the final weights of a ``phase_teacher``
run and how a run is classified (theory/sgd_sde.md §5–§6).

**Criterion** (evaluated at the final weights on fresh test inputs). With g_n the per-sample descent
direction, dX_n = W g_nᵀ + g_n Wᵀ, U the eigenvectors of X = WWᵀ sorted by descending eigenvalue, K̃ = Uᵀ
mean_n(dX_n) U and Ṽ_ij = Var_n[(Uᵀ dX_n U)_ij]:

    K_t = |K̃_11| − |K̃_hh|,    V_t = 2Ṽ_{1,h}/(h − 1) + Σ_{k=1}^{h−2} (Ṽ_{1,1+k} + Ṽ_{h,h−k})/k,
    Δ̄ = 4σ_W²/(√r (h − 1)),   ordered ⇔ K_t ≥ Θ V_t/Δ̄,   Θ = η/B,    (h = n_h, r = n_f/n_h)

so T_c = K_t Δ̄/V_t is the temperature at which the point would flip. ``release_indexing`` uses Ṽ_{h,h−k+1}
(the released code's apparent off-by-one) instead of Ṽ_{h,h−k}.

**Three phases** (:func:`classify`; operational rule following the note's map: the criterion separates ordered
from paramagnetic, and below T_c the jammed phase is the one whose soft spins stay saturated):

* paramagnetic: the criterion fails, or the run diverged (the weights diffused to large values);
* jammed: the criterion holds but the final preactivation variance σ_z² = mean (W h⁰)² exceeds ½, where the
  density of tanh z turns bimodal (tanh saturated, vanishing gradient);
* ordered: the criterion holds and σ_z² ≤ ½.

The predicted boundaries are theory (:mod:`._phase`).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from solvers.linalg import eigh

from . import _problem_tanh_net as _tanh_net

__all__ = ["PHASES", "phase_criterion", "phase_observables", "spacing_growth", "classify"]

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
