r"""Full GD at infinite width (extensive_outputs.md §6): μP mode-by-mode recursion and the NTK lazy limit.

Under μP (γ0 fixed), ν → ∞ with the population loss: h/ν → σ_w², k/ν → σ², A → 0 at t = 0, and in the SVD of the
teacher B = U diag(b) Wᵀ every mode evolves alone (q = b − a):

    a' = a + η q (k + h) + η²γ0² q² a
    h' = h + 2ηγ0² q a + η²γ0² q² k          a = 0, h = σ_w², k = σ² at t = 0
    k' = k + 2ηγ0² q a + η²γ0² q² h

* singular values of W⁰/√N: √k_t(b) on a fraction min(κ, 1) (b over the teacher law), σ on the rest;
* per-channel test loss: ½ min(1, 1/κ) E_b (b − a_t)²  (+ σ_ε²/2, zero here: population).

NTK (γ0 = γ̃0/√ν → 0): the spectrum stays at σ (lazy limit); the function follows the frozen kernel σ² + σ_w²,
A_t − B = (1 − η(σ² + σ_w²))^t (A_0 − B), with |A_0|²/C = σ²σ_w²/γ̃0²:
test(t) = ½(ρ* + σ²σ_w²/γ̃0²)(1 − η(σ² + σ_w²))^{2t}.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._laws import Law

__all__ = ["modes", "Modes", "mixture_cdf", "mixture_density", "mixture_quantiles", "lazy_test_loss"]


class Modes(NamedTuple):
    """Per-mode trajectories (T, n) of a, h, k for teacher singular values b (n,)."""

    a: Float[Array, "T n"]
    h: Float[Array, "T n"]
    k: Float[Array, "T n"]


def modes(b: Float[Array, " n"], lr: float, gamma0: float, sigma: float, sigma_w: float, steps: int) -> Modes:
    """March the μP ν = ∞ recursion for every mode b (lax.scan over t; vectorised over modes)."""
    g2 = gamma0**2

    def step(c: tuple[Array, Array, Array], _: None) -> tuple[tuple[Array, Array, Array], tuple]:
        a, h, k = c
        q = b - a
        a2 = a + lr * q * (k + h) + lr**2 * g2 * q**2 * a
        h2 = h + 2 * lr * g2 * q * a + lr**2 * g2 * q**2 * k
        k2 = k + 2 * lr * g2 * q * a + lr**2 * g2 * q**2 * h
        return (a2, h2, k2), (a, h, k)

    init = (jnp.zeros_like(b), jnp.full_like(b, sigma_w**2), jnp.full_like(b, sigma**2))
    _, (a, h, k) = jax.lax.scan(step, init, None, length=steps)
    return Modes(a, h, k)


def _cells(values_at_edges: Float[Array, " m"]) -> tuple[Array, Array]:
    lo = jnp.minimum(values_at_edges[1:], values_at_edges[:-1])
    hi = jnp.maximum(values_at_edges[1:], values_at_edges[:-1])
    return lo, jnp.maximum(hi, lo + 1e-15)


def mixture_cdf(y: Float[Array, " g"], edge_values: Array, law: Law, frac: float, atom_at: float) -> Array:
    """CDF of the law: with probability ``frac`` the image of the teacher law under the map b ↦ y(b) (known at
    the cell edges, linear in each cell), else an atom at ``atom_at``."""
    lo, hi = _cells(edge_values)
    part = jnp.clip((y[:, None] - lo[None, :]) / (hi - lo)[None, :], 0.0, 1.0) @ law.cell_weights
    return frac * part / jnp.sum(law.cell_weights) + (1.0 - frac) * (y >= atom_at)


def mixture_density(y: Float[Array, " g"], edge_values: Array, law: Law, frac: float) -> Array:
    """Density of the continuous part (mass ``frac``) of :func:`mixture_cdf`."""
    lo, hi = _cells(edge_values)
    inside = (y[:, None] >= lo[None, :]) & (y[:, None] < hi[None, :])
    return frac * (inside / (hi - lo)[None, :]) @ law.cell_weights / jnp.sum(law.cell_weights)


def mixture_quantiles(levels: Array, edge_values: Array, law: Law, frac: float, atom_at: float,
                      iters: int = 80) -> Array:
    """Quantiles of :func:`mixture_cdf` by bisection."""
    lo0 = jnp.minimum(jnp.min(edge_values), atom_at) * jnp.ones_like(levels)
    hi0 = jnp.maximum(jnp.max(edge_values), atom_at) * jnp.ones_like(levels)

    def body(_: int, c: tuple[Array, Array]) -> tuple[Array, Array]:
        lo, hi = c
        mid = 0.5 * (lo + hi)
        below = mixture_cdf(mid, edge_values, law, frac, atom_at) < levels
        return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

    lo, hi = jax.lax.fori_loop(0, iters, body, (lo0, hi0))
    return 0.5 * (lo + hi)


def lazy_test_loss(lr: float, gamma0: float, sigma: float, sigma_w: float, rho: float, steps: int,
                   noise: float = 0.0) -> Array:
    """NTK ν = ∞ per-channel test loss ½[(ρ* + σ²σ_w²/γ̃0²)(1 − η(σ² + σ_w²))^{2t} + σ_ε²] (γ̃0 = ``gamma0``)."""
    t = jnp.arange(steps, dtype=jnp.float64)
    return 0.5 * ((rho + sigma**2 * sigma_w**2 / gamma0**2) * (1.0 - lr * (sigma**2 + sigma_w**2)) ** (2 * t)
                  + noise**2)
