r"""Bulk of the stability kernel K̃ = XK̂Xᵀ/P: nested Silverstein equations (edge_of_stability.md §3).

At step t the bulk of K̃(t) is that of K̃_0[κ(t)], the kernel built from the *initial* matrices with the current
scalars κ_ℓ(t) = C_g^ℓ(t,t). Its resolvent is described by the "star" self-responses, explicit in the deepest
forward response A := A*_{L−1} ∈ (0, 1):

    p_L = 1
    for ℓ = L, …, 1:
        B*_ℓ = σ²c_ℓp_ℓ/(1 − A*_{ℓ−1}p_ℓ)                         (c_1 = ν, c_ℓ = 1 for ℓ ≥ 2)
        p_{ℓ−1} = κ_ℓ + B*_ℓ  (ℓ ≥ 2),   p_0 = κ_1 + B*_1/ν
        A*_{ℓ−2} = A*_{ℓ−1}/(σ² + A*_{ℓ−1}p_{ℓ−1})              (ℓ ≥ 2)
    m = A*_0/(σ²/ν + A*_0p_0),   R* = p_0/(1 − mp_0),   λ(A) = 1/m + R*/α

with m(λ) = P⁻¹tr(λ − K̃)⁻¹. λ(A) → ∞ as A → 0⁺; the bulk edge is its first minimum. Above the edge λ(A) is
inverted on (0, A_edge) by bracketing. Everything is scalar and jit/vmap/grad-able.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from solvers.roots import chandrupatla

__all__ = ["BulkScalars", "bulk_scalars", "bulk_edge", "stieltjes", "lazy_edge"]


class BulkScalars(NamedTuple):
    """Self-responses of the star step at one spectral parameter (edge_of_stability.md §3–4.2)."""

    lam: Float[Array, ""]  # λ(A)
    m: Float[Array, ""]  # P⁻¹ tr(λ − K̃)⁻¹
    p: Float[Array, " L+1"]  # p_0 … p_L (p_L = 1)
    a_star: Float[Array, " L"]  # A*_0 … A*_{L−1}
    b_star: Float[Array, " L"]  # B*_1 … B*_L
    r_star: Float[Array, ""]  # R*


def bulk_scalars(
    A: Float[Array, ""], kappa: Float[Array, " L"], sigma: Array, nu: Array, alpha: Array
) -> BulkScalars:
    """The star scalars at deepest forward response A = A*_{L−1}; ``kappa`` = (κ_1, …, κ_L)."""
    L = kappa.shape[0]
    s2 = sigma**2
    p = [None] * (L + 1)
    a = [None] * L
    b = [None] * L
    p[L] = jnp.ones_like(A)
    a[L - 1] = A
    for ell in range(L, 0, -1):
        c = nu if ell == 1 else 1.0
        b[ell - 1] = s2 * c * p[ell] / (1 - a[ell - 1] * p[ell])
        if ell >= 2:
            p[ell - 1] = kappa[ell - 1] + b[ell - 1]
            a[ell - 2] = a[ell - 1] / (s2 + a[ell - 1] * p[ell - 1])
        else:
            p[0] = kappa[0] + b[0] / nu
    m = a[0] / (s2 / nu + a[0] * p[0])
    r = p[0] / (1 - m * p[0])
    lam = 1 / m + r / alpha
    return BulkScalars(lam, m, jnp.stack(p), jnp.stack(a), jnp.stack(b), r)


def _logit_grid(n: int) -> Array:
    return jnp.linspace(-30.0, 30.0, n)


def bulk_edge(
    kappa: Float[Array, " L"], sigma: Array, nu: Array, alpha: Array, n_grid: int = 400
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """(λ_edge, A_edge): the first minimum of λ(A) on A ∈ (0, 1), A = sigmoid(s).

    The derivative dλ/ds is sampled on a grid of s; its first sign change (− to +) is refined by Chandrupatla's
    method, so the edge is exact to rounding.
    """

    def lam_of_s(s: Array) -> Array:
        return bulk_scalars(jax.nn.sigmoid(s), kappa, sigma, nu, alpha).lam

    dlam = jax.grad(lam_of_s)
    s = _logit_grid(n_grid)
    d = jax.vmap(dlam)(s)
    up = (d[1:] >= 0) & (d[:-1] < 0)
    i = jnp.argmax(up)
    res = chandrupatla(dlam, s[i], s[i + 1], rtol=1e-15, maxiter=100)
    s_e = res.x
    return lam_of_s(s_e), jax.nn.sigmoid(s_e)


def spectral_parameter(
    lam: Float[Array, ""], a_edge: Array, kappa: Array, sigma: Array, nu: Array, alpha: Array
) -> Float[Array, ""]:
    """A ∈ (0, A_edge) with λ(A) = lam (lam above the edge), by bracketing in log A."""

    def g(u: Array) -> Array:
        return bulk_scalars(a_edge * jnp.exp(u), kappa, sigma, nu, alpha).lam - lam

    # λ(A) ~ 1/A as A → 0: e^{-60} A_edge is far above any spectral parameter of interest
    return a_edge * jnp.exp(chandrupatla(g, -60.0, 0.0, rtol=1e-15).x)


def stieltjes(
    lam: Float[Array, ""], kappa: Float[Array, " L"], sigma: Array, nu: Array, alpha: Array
) -> Float[Array, ""]:
    """m(λ) = P⁻¹tr(λ − K̃)⁻¹ of the bulk law, for λ above the edge."""
    _, a_edge = bulk_edge(kappa, sigma, nu, alpha)
    A = spectral_parameter(lam, a_edge, kappa, sigma, nu, alpha)
    return bulk_scalars(A, kappa, sigma, nu, alpha).m


def lazy_edge(kappa_lazy: float, alpha: float) -> float:
    """ν → ∞ edge of K̃(0): κ(1 + α^{−1/2})², the Marchenko–Pastur edge with scale κ (spectra.md §10)."""
    return kappa_lazy * (1 + alpha**-0.5) ** 2
