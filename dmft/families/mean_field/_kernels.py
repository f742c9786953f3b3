"""Initial (t = 0) kernels of the mean-field DMFT (mean_field.md §5).

    Φ^0 = K^x,   Φ^ℓ(0) = E[φ(h)φ(h)ᵀ], h ~ N(0, σ²Φ^{ℓ−1}(0))                        (ℓ = 1..L)
    G^{L+1} ≡ 1,  G^L(0) = σ_w² E[φ′(h^L)φ′(h^L)ᵀ],  G^ℓ(0) = σ² G^{ℓ+1}(0) ∘ E[φ′(h^ℓ)φ′(h^ℓ)ᵀ]
    K(0) = Σ_{ℓ=0}^{L} G^{ℓ+1}(0) ∘ Φ^ℓ(0)

Each entry is a Gaussian expectation over a 2×2 marginal (h_μ, h_ν): closed form for linear φ, the arc-cosine
kernels (Cho & Saul) for ReLU, and a tensor Gauss–Hermite rule otherwise. For linear φ, K(0) = κK^x with
κ = Lσ^{2(L−1)}σ_w² + σ^{2L}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .problem import activation as _activation

__all__ = ["InitialKernels", "initial_kernels", "gaussian_pair_expectation", "linear_kappa"]


class InitialKernels(NamedTuple):
    """Φ^ℓ(0) for ℓ = 0..L, G^ℓ(0) for ℓ = 1..L+1 (stacked in that order), and K(0)."""

    Phi: Float[Array, "Lp1 M M"]
    G: Float[Array, "Lp1 M M"]
    ntk: Float[Array, "M M"]


def linear_kappa(depth: int, sigma: float, sigma_w: float) -> float:
    """κ = Lσ^{2(L−1)}σ_w² + σ^{2L}: K(0) = κK^x for linear φ."""
    return depth * sigma ** (2 * (depth - 1)) * sigma_w**2 + sigma ** (2 * depth)


_GH_ORDER = 48


def gaussian_pair_expectation(
    f: Callable[[Array], Array], g: Callable[[Array], Array], cov: Float[Array, "M M"], order: int = _GH_ORDER
) -> Float[Array, "M M"]:
    """E[f(a) g(b)] for every pair (a, b) = (h_μ, h_ν), h ~ N(0, cov), by a tensor Gauss–Hermite rule.

    a = √c_μμ z₁ and b = √c_νν (ρ z₁ + √(1 − ρ²) z₂), ρ = c_μν/√(c_μμ c_νν) (clipped to [−1, 1]), exact for
    polynomials of degree < 2·order in each variable.
    """
    z, w = np.polynomial.hermite_e.hermegauss(order)
    z, w = jnp.asarray(z), jnp.asarray(w / w.sum())
    sd = jnp.sqrt(jnp.maximum(jnp.diag(cov), 0.0))
    denom = jnp.where(sd[:, None] * sd[None, :] > 0, sd[:, None] * sd[None, :], 1.0)
    rho = jnp.clip(cov / denom, -1.0, 1.0)

    def pair(sa: Array, sb: Array, r: Array) -> Array:
        a = sa * z[:, None]
        b = sb * (r * z[:, None] + jnp.sqrt(1 - r**2) * z[None, :])
        return jnp.sum(w[:, None] * w[None, :] * f(a) * g(b))

    return jax.vmap(jax.vmap(pair, in_axes=(None, 0, 0)), in_axes=(0, None, 0))(sd, sd, rho)


def _arccos_kernels(cov: Float[Array, "M M"]) -> tuple[Array, Array]:
    """E[relu(a)relu(b)] = √(c_aa c_bb)(sin θ + (π − θ)cos θ)/(2π) and E[relu′(a)relu′(b)] = (π − θ)/(2π)."""
    sd = jnp.sqrt(jnp.maximum(jnp.diag(cov), 0.0))
    norm = sd[:, None] * sd[None, :]
    cos = jnp.clip(cov / jnp.where(norm > 0, norm, 1.0), -1.0, 1.0)
    theta = jnp.arccos(cos)
    phi = norm * (jnp.sin(theta) + (jnp.pi - theta) * cos) / (2 * jnp.pi)
    dphi = (jnp.pi - theta) / (2 * jnp.pi)
    return phi, jnp.where(norm > 0, dphi, 0.0)


def _layer_expectations(name: str, cov: Float[Array, "M M"]) -> tuple[Array, Array]:
    """(E[φφᵀ], E[φ′φ′ᵀ]) for h ~ N(0, cov)."""
    if name == "linear":
        return cov, jnp.ones_like(cov)
    if name == "relu":
        return _arccos_kernels(cov)
    phi = _activation(name)
    dphi = jnp.vectorize(jax.grad(phi))
    return gaussian_pair_expectation(phi, phi, cov), gaussian_pair_expectation(dphi, dphi, cov)


def initial_kernels(
    kx: Float[Array, "M M"], *, activation: str, depth: int, sigma: float, sigma_w: float
) -> InitialKernels:
    """Φ^ℓ(0), G^ℓ(0) and K(0) on M points from their input Gram K^x (module docstring)."""
    kx = jnp.asarray(kx, dtype=float)
    phis, dphis = [kx], []
    for _ in range(depth):
        p, d = _layer_expectations(activation, sigma**2 * phis[-1])
        phis.append(p)
        dphis.append(d)
    gs = [jnp.ones_like(kx)]  # G^{L+1}
    for ell in range(depth, 0, -1):
        scale = sigma_w**2 if ell == depth else sigma**2
        gs.append(scale * gs[-1] * dphis[ell - 1])
    gs = gs[::-1]  # G^1 .. G^{L+1}
    ntk = sum(g * p for g, p in zip(gs, phis, strict=True))
    return InitialKernels(jnp.stack(phis), jnp.stack(gs), ntk)
