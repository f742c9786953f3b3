"""Bulk laws of Gaussian weight matrices (spectra.md §2, conventions.md §7).

An n×m matrix M with iid entries of variance σ²/m has aspect ratio q = n/m. The eigenvalues x of MMᵀ (n of them)
follow the Marchenko–Pastur (MP) law

    p(x) = √((x₊ − x)(x − x₋)) / (2πσ²qx)   on [x₋, x₊],   x± = σ²(1 ± √q)²,   plus an atom 1 − 1/q at 0 if q > 1;

its singular values s = √x have density 2s·p(s²) and edge σ(1 + √q). The square case q = 1 is the quarter circle
√(4σ² − s²)/(πσ²) on [0, 2σ]. The MP law of XᵀX/P (X: P×D, iid N(0,1)) is the case σ = 1, q = y = 1/α.

Every law is parametrised by the angle θ ∈ [0, π] through x(θ) = σ²(1 + q + 2√q cos θ), which maps the support
onto [0, π] and removes both square-root endpoints: p(x)dx = (2σ²/π) sin²θ / x(θ) dθ. The CDF and the quadrature
rule of :func:`mp_expectation` are built on it.

All functions are pure jnp, float64 (complex128 for complex arguments), jit- and vmap-able in every argument.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Inexact

import dmft._jax  # noqa: F401  (refuses known-bad JAX versions)

__all__ = [
    "mp_edges",
    "mp_atom",
    "mp_density",
    "mp_cdf",
    "mp_expectation",
    "sv_edges",
    "bulk_edge",
    "sv_density",
    "sv_cdf",
    "resolvent_m1",
    "resolvent_m2",
    "stieltjes",
    "quarter_circle_density",
    "quarter_circle_edge",
    "quarter_circle_resolvent",
]


def _f(x: ArrayLike) -> Array:
    return jnp.asarray(x, dtype=jnp.result_type(float, x))


# ----------------------------------------------------------------------------------------------------------------
# Eigenvalues of MMᵀ (MP law)
# ----------------------------------------------------------------------------------------------------------------


@jax.jit
def mp_edges(q: ArrayLike, sigma: ArrayLike = 1.0) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """Support edges x± = σ²(1 ± √q)² of the eigenvalues of MMᵀ."""
    q, s2 = _f(q), _f(sigma) ** 2
    return s2 * (1 - jnp.sqrt(q)) ** 2, s2 * (1 + jnp.sqrt(q)) ** 2


@jax.jit
def mp_atom(q: ArrayLike) -> Float[Array, ""]:
    """Mass of the atom at 0 of the eigenvalues of MMᵀ: max(0, 1 − 1/q)."""
    q = _f(q)
    return jnp.maximum(0.0, 1.0 - 1.0 / q)


@jax.jit
def mp_density(x: ArrayLike, q: ArrayLike, sigma: ArrayLike = 1.0) -> Float[Array, "*shape"]:
    """Continuous part of the eigenvalue density of MMᵀ, √((x₊ − x)(x − x₋))/(2πσ²qx); 0 off the support."""
    x, q, s2 = _f(x), _f(q), _f(sigma) ** 2
    lo, hi = mp_edges(q, sigma)
    inside = (x > lo) & (x < hi)
    xs = jnp.where(inside, x, 0.5 * (lo + hi))
    return jnp.where(inside, jnp.sqrt((hi - xs) * (xs - lo)) / (2 * jnp.pi * s2 * q * xs), 0.0)


def _theta_antiderivative(theta: Array, q: Array, s2: Array) -> Array:
    """I(θ) = ∫₀^θ sin²φ / x(φ) dφ with x(φ) = A + B cos φ, A = σ²(1 + q), B = 2σ²√q.

    Closed form: I = −sin θ/B + [Aθ − 2σ²|1 − q| arctan(r tan(θ/2))]/B², r = |1 − √q|/(1 + √q).
    """
    a, b = s2 * (1 + q), 2 * s2 * jnp.sqrt(q)
    r = jnp.abs(1 - jnp.sqrt(q)) / (1 + jnp.sqrt(q))
    arct = jnp.arctan2(r * jnp.sin(theta / 2), jnp.cos(theta / 2))
    return -jnp.sin(theta) / b + (a * theta - 2 * s2 * jnp.abs(1 - q) * arct) / b**2


@jax.jit
def mp_cdf(x: ArrayLike, q: ArrayLike, sigma: ArrayLike = 1.0) -> Float[Array, "*shape"]:
    """CDF of the eigenvalues of MMᵀ including the atom: F(x) = atom + (2σ²/π)[I(π) − I(θ(x))] for x ≥ 0."""
    x, q, s2 = _f(x), _f(q), _f(sigma) ** 2
    cos_t = jnp.clip((x / s2 - 1 - q) / (2 * jnp.sqrt(q)), -1.0, 1.0)
    theta = jnp.arccos(cos_t)
    cont = (2 * s2 / jnp.pi) * (_theta_antiderivative(jnp.pi, q, s2) - _theta_antiderivative(theta, q, s2))
    _, hi = mp_edges(q, sigma)
    return jnp.where(x < 0, 0.0, jnp.where(x >= hi, 1.0, jnp.clip(mp_atom(q) + cont, 0.0, 1.0)))


def mp_expectation(
    f: Callable[[Float[Array, " n"]], Inexact[Array, "n ..."]],
    y: ArrayLike,
    n_nodes: int = 256,
    sigma: ArrayLike = 1.0,
) -> Inexact[Array, "*shape"]:
    """E f(λ) under the MP law of aspect ratio y (eigenvalues of MMᵀ, entry variance σ²/m), atom included.

    For the law of XᵀX/P use y = 1/α and σ = 1. ``f`` maps a vector of λ's, shape (n,), to an array of shape
    (n, ...) (it is called once, on the nodes and on λ = 0); the result has shape (...).

    Rule: with x(θ) = σ²(1 + y + 2√y cos θ),

        E f = f(0) + (2σ²/π) ∫₀^π [f(x(θ)) − f(0)] sin²θ / x(θ) dθ,

    which holds for every y (the atom and the continuous part add up to mass 1). The integrand is
    [(f(x) − f(0))/x]·sin²θ, smooth even at y = 1 where x₋ = 0, so Gauss–Chebyshev nodes of the second kind
    θ_i = iπ/(n+1) with weights π/(n+1) are exact for polynomial f of degree ≤ 2n and converge exponentially for
    analytic f. jit/vmap-able in y and σ (``n_nodes`` is static).
    """
    y, s2 = _f(y), _f(sigma) ** 2
    theta = jnp.arange(1, n_nodes + 1, dtype=float) * (jnp.pi / (n_nodes + 1))
    lam = s2 * (1 + y + 2 * jnp.sqrt(y) * jnp.cos(theta))
    vals = f(jnp.concatenate([jnp.zeros(1, lam.dtype), lam]))
    f0, fl = vals[0], vals[1:]
    w = (2 * s2 / (n_nodes + 1)) * jnp.sin(theta) ** 2 / lam
    return f0 + jnp.tensordot(w, fl - f0[None], axes=(0, 0))


# ----------------------------------------------------------------------------------------------------------------
# Singular values of M
# ----------------------------------------------------------------------------------------------------------------


@jax.jit
def sv_edges(q: ArrayLike, sigma: ArrayLike = 1.0) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """Singular-value edges σ|1 − √q| and σ(1 + √q)."""
    q, s = _f(q), _f(sigma)
    return s * jnp.abs(1 - jnp.sqrt(q)), s * (1 + jnp.sqrt(q))


@jax.jit
def bulk_edge(q: ArrayLike, sigma: ArrayLike = 1.0) -> Float[Array, ""]:
    """Top of the singular-value bulk, σ(1 + √q) (2σ for square matrices)."""
    return _f(sigma) * (1 + jnp.sqrt(_f(q)))


@jax.jit
def sv_density(s: ArrayLike, q: ArrayLike, sigma: ArrayLike = 1.0) -> Float[Array, "*shape"]:
    """Continuous part of the singular-value density, 2s·p(s²) (mass min(1, 1/q); the atom is at s = 0)."""
    s = _f(s)
    return 2 * s * mp_density(s**2, q, sigma)


@jax.jit
def sv_cdf(s: ArrayLike, q: ArrayLike, sigma: ArrayLike = 1.0) -> Float[Array, "*shape"]:
    """CDF of the n singular values √eig(MMᵀ) (atom 1 − 1/q at 0 when q > 1)."""
    s = _f(s)
    return jnp.where(s < 0, 0.0, mp_cdf(s**2, q, sigma))


# ----------------------------------------------------------------------------------------------------------------
# Resolvent traces and Stieltjes transform
# ----------------------------------------------------------------------------------------------------------------


@jax.jit
def resolvent_m1(w: ArrayLike, q: ArrayLike, sigma: ArrayLike = 1.0) -> Inexact[Array, "*shape"]:
    """m₁(w) = n⁻¹ tr(w − MMᵀ)⁻¹ = 𝔤(w/σ²)/σ², 𝔤(z) = 2 / [(z + q − 1) + √(z − z₋)√(z − z₊)].

    This is the rationalised form of [(z + q − 1) − √((z + q − 1)² − 4qz)]/(2qz) (no cancellation at large z).
    For complex w the product of principal square roots is the branch with m₁ ~ 1/w at infinity, cut on the
    support; for real w it is used off the support only (m₁ > 0 above the bulk, NaN inside it). The atom at 0
    (q > 1) appears as the pole (1 − 1/q)/w.
    """
    w = jnp.asarray(w)
    dt = jnp.result_type(w, float)
    w, q, s2 = w.astype(dt), _f(q).astype(dt), (_f(sigma) ** 2).astype(dt)
    z = w / s2
    lo, hi = (1 - jnp.sqrt(q)) ** 2, (1 + jnp.sqrt(q)) ** 2
    if jnp.iscomplexobj(z):
        root = jnp.sqrt(z - lo) * jnp.sqrt(z - hi)
    else:
        root = jnp.sign(z - hi) * jnp.sqrt((z - lo) * (z - hi))
    return 2 / ((z + q - 1) + root) / s2


@jax.jit
def resolvent_m2(w: ArrayLike, q: ArrayLike, sigma: ArrayLike = 1.0) -> Inexact[Array, "*shape"]:
    """m₂(w) = m⁻¹ tr(w − MᵀM)⁻¹ = q m₁(w) + (1 − q)/w."""
    w = jnp.asarray(w)
    dt = jnp.result_type(w, float)
    w, q = w.astype(dt), _f(q).astype(dt)
    return q * resolvent_m1(w, q, sigma) + (1 - q) / w


@jax.jit
def stieltjes(z: ArrayLike, q: ArrayLike, sigma: ArrayLike = 1.0) -> Inexact[Array, "*shape"]:
    """Stieltjes transform s_μ(z) = ∫ dμ(x)/(x − z) = −m₁(z) of the eigenvalues of MMᵀ; density = π⁻¹ Im s(x + i0)."""
    return -resolvent_m1(z, q, sigma)


# ----------------------------------------------------------------------------------------------------------------
# Square N×N, variance σ²/N: quarter circle
# ----------------------------------------------------------------------------------------------------------------


@jax.jit
def quarter_circle_density(s: ArrayLike, sigma: ArrayLike = 1.0) -> Float[Array, "*shape"]:
    """Singular-value density √(4σ² − s²)/(πσ²) on [0, 2σ]."""
    s, s2 = _f(s), _f(sigma) ** 2
    inside = (s >= 0) & (s < 2 * jnp.sqrt(s2))
    return jnp.where(inside, jnp.sqrt(jnp.where(inside, 4 * s2 - s**2, 0.0)) / (jnp.pi * s2), 0.0)


@jax.jit
def quarter_circle_edge(sigma: ArrayLike = 1.0) -> Float[Array, ""]:
    """Edge 2σ of the quarter circle."""
    return 2 * _f(sigma)


@jax.jit
def quarter_circle_resolvent(w: ArrayLike, sigma: ArrayLike = 1.0) -> Inexact[Array, "*shape"]:
    """m(w) = N⁻¹ tr(w − MMᵀ)⁻¹ = (w − √(w² − 4σ²w))/(2σ²w) above the bulk (the case q = 1 of m₁)."""
    return resolvent_m1(w, 1.0, sigma)
