"""Closed-form laws of the ``sgd_sde`` family (theory/sgd_sde.md §3, §7): Marchenko–Pastur, the Laguerre
(weight decay) stationary law, the 1-D gamma reduction, the provisional gamma-type law of 2507.12709, and
exact moment recursions used as oracles.

Shapes: W ∈ R^{m×n} with M = max(m, n), N = min(m, n); its N singular values s_i; λ_i = s_i² (eigenvalues of
WᵀW or WWᵀ, whichever is N×N). All functions are NumPy/SciPy (float64), vectorised over their first argument.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from ...spectra import bulk

__all__ = [
    "mp_sv_edges",
    "mp_eigen_pdf",
    "mp_eigen_cdf",
    "mp_sv_pdf",
    "laguerre_stationary",
    "noise_sum_sq",
    "sgd_teacher_error",
    "radial_stationary_pdf",
    "gamma_1d_law",
    "gamma_type_law",
    "gamma_sv_pdf",
]


def _bulk_args(rows: int, cols: int, var: float) -> tuple[float, float]:
    """(q, σ) of :mod:`dmft.spectra.bulk` for an m×n matrix with entry variance ``var``: the N×M orientation,
    q = N/M ≤ 1 and σ² = var·M."""
    big, small = max(rows, cols), min(rows, cols)
    return small / big, math.sqrt(var * big)


def mp_sv_edges(rows: int, cols: int, var: float) -> tuple[float, float]:
    """Singular-value edges √var·|√M ± √N| of an m×n matrix with iid entries of variance ``var``."""
    lo, hi = bulk.sv_edges(*_bulk_args(rows, cols, var))
    return float(lo), float(hi)


def mp_eigen_pdf(lam: np.ndarray, rows: int, cols: int, var: float) -> np.ndarray:
    """Marchenko–Pastur density of the N nonzero eigenvalues λ = s² (support var(√M ± √N)²)."""
    return np.asarray(bulk.mp_density(lam, *_bulk_args(rows, cols, var)))


def mp_eigen_cdf(lam: np.ndarray, rows: int, cols: int, var: float) -> np.ndarray:
    """CDF of :func:`mp_eigen_pdf`."""
    return np.asarray(bulk.mp_cdf(lam, *_bulk_args(rows, cols, var)))


def mp_sv_pdf(s: np.ndarray, rows: int, cols: int, var: float) -> np.ndarray:
    """Density of the N singular values, 2 s p_λ(s²)."""
    return np.asarray(bulk.sv_density(s, *_bulk_args(rows, cols, var)))


def laguerre_stationary(
    rows: int, cols: int, diffusion: float, weight_decay: float, step: float = 0.0
) -> dict[str, float]:
    """Pure noise with weight decay: W entries iid N(0, v) at stationarity, so λ follows the Laguerre
    orthogonal ensemble with Marchenko–Pastur edges (§3):

        v = 𝒟/(2λ_wd)  (continuous time),   v = 𝒟/(λ_wd (2 − h λ_wd))  (Euler–Maruyama / SGD with step h).

    Returns ``var`` v, ``mean_sum_sq`` = E Σλ = m n v, and the singular-value edges ``sv_lo``, ``sv_hi``.
    """
    if not 0 < step * weight_decay < 2 and not (step == 0 and weight_decay > 0):
        raise ValueError(
            f"no stationary law: need weight_decay > 0 and step·weight_decay < 2, got "
            f"{weight_decay} and {step * weight_decay}"
        )
    v = diffusion / (weight_decay * (2.0 - step * weight_decay))
    lo, hi = mp_sv_edges(rows, cols, v)
    return {"var": v, "mean_sum_sq": rows * cols * v, "sv_lo": lo, "sv_hi": hi}


def noise_sum_sq(
    k: np.ndarray, sum_sq0: float, rows: int, cols: int, diffusion: float, weight_decay: float, step: float
) -> np.ndarray:
    """Exact E|W_k|_F² of W_{k+1} = (1 − h λ_wd) W_k + √(𝒟 h) N_k (SGD with Gaussian noise and h = η):

        E|W_k|² = a^k |W_0|² + m n 𝒟 h (1 − a^k)/(1 − a),   a = (1 − h λ_wd)²,

    which tends to |W_0|² + m n 𝒟 τ (τ = h k) when λ_wd = 0 (oracle 2: the repulsion cancels in pairs).
    """
    k = np.asarray(k, dtype=float)
    a = (1.0 - step * weight_decay) ** 2
    growth = k if a == 1.0 else (1.0 - a**k) / (1.0 - a)
    return a**k * sum_sq0 + rows * cols * diffusion * step * growth


def sgd_teacher_error(
    k: np.ndarray,
    err0: float,
    rows: int,
    cols: int,
    lr: float,
    batch: int,
    label_noise: float,
    grad_noise: float = 0.0,
    step: float | None = None,
) -> np.ndarray:
    """Exact E|W_k − W*|_F² after k SGD steps on the linear teacher (x ~ N(0, I_n), no weight decay):

        q_{j+1} = a q_j + b,   a = (1 − h)² + h η (n+1)/B,   b = h η m n (σ_ε² + σ_g²)/B

    per step of size h. For SGD (h = η, the default) a = 1 − 2η + η²(1 + (n+1)/B), from E Ŝ² = (1 + (n+1)/B) I
    for the batch covariance Ŝ of Gaussian inputs; the matrix SDE with state-dependent noise (:mod:`._matrix`)
    obeys the same recursion with its own step h = η/substeps (k η/h steps), and with constant noise it does
    not. Stationary SGD value: m n η(σ_ε² + σ_g²)/(B(2 − η(1 + (n+1)/B))).
    """
    h = lr if step is None else step
    j = np.asarray(k, dtype=float) * lr / h
    a = (1.0 - h) ** 2 + h * lr * (cols + 1) / batch
    b = h * lr * rows * cols * (label_noise**2 + grad_noise**2) / batch
    return a**j * err0 + b * (1.0 - a**j) / (1.0 - a)


def radial_stationary_pdf(s: np.ndarray, c: float, b: float, d: float) -> np.ndarray:
    """Stationary density of ds = (c/s − b s) dτ + √(2d) dβ on s > 0 (unit test of scalar integrators, §3):

    p(s) = 2 κ^{(a+1)/2} s^a e^{−κ s²} / Γ((a+1)/2),   a = c/d,   κ = b/(2d).
    """
    s = np.asarray(s, dtype=float)
    a, kappa = c / d, b / (2 * d)
    logp = (
        math.log(2)
        + 0.5 * (a + 1) * math.log(kappa)
        + a * np.log(s)
        - kappa * s**2
        - special.gammaln(0.5 * (a + 1))
    )
    return np.exp(logp)


def gamma_1d_law(rows: int, cols: int, diffusion: float, weight_decay: float) -> tuple[float, float]:
    """1-D reduction (no repulsion, drift −λ_wd s): λ = s² ~ Gamma(shape (M − N + 1)/2, rate λ_wd/𝒟)."""
    return 0.5 * (max(rows, cols) - min(rows, cols) + 1), weight_decay / diffusion


def gamma_type_law(rows: int, cols: int, lr: float) -> tuple[float, float]:
    """The provisional gamma-type law of 2507.12709: λ ~ Gamma(shape (M − N + 3)/4, rate 1/(4η))."""
    return 0.25 * (max(rows, cols) - min(rows, cols) + 3), 1.0 / (4 * lr)


def gamma_sv_pdf(s: np.ndarray, shape: float, rate: float) -> np.ndarray:
    """Density of s when λ = s² ~ Gamma(shape k, rate r): p(s) = 2 r^k s^{2k−1} e^{−r s²}/Γ(k)."""
    s = np.asarray(s, dtype=float)
    return np.exp(
        math.log(2)
        + shape * math.log(rate)
        + (2 * shape - 1) * np.log(s)
        - rate * s**2
        - special.gammaln(shape)
    )
