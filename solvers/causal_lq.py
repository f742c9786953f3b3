"""Causal square roots of C = GGᵀ built one row of G at a time (a Gram–Schmidt LQ factorisation).

A Gaussian path with covariance C = GGᵀ (G ∈ R^{T×n}) is sampled causally as ρ = 𝐋Z, Z ~ N(0, I), with 𝐋 the
lower triangular factor of G = 𝐋Q (Q with orthonormal rows): row t of 𝐋 needs rows 0..t of G only, so a
process whose data matrix is itself produced causally can be sampled while it is built, and earlier samples
never change.

Working on G rather than on C = GGᵀ is what makes this stable for the numerically low-rank covariances of
smooth processes: 𝐋(t, r) = G(t,:)·q_r needs no division, and the pivot 𝐋(t,t) is the norm of the part of
G(t,:) orthogonal to earlier rows (classical Gram–Schmidt applied twice, "twice is enough"), never a
difference C(t,t) − |x|² of nearly equal numbers. A row whose orthogonal part is below ``jitter``·|G(t,:)|
is *degenerate*: its pivot is 0 and it adds no direction. (A Cholesky factorisation of C itself, row by row
with clipping, loses all accuracy there.)

Pure jnp, float64, jit- and vmap-able; no knowledge of the model.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular
from jaxtyping import Array, Bool, Float, Int

__all__ = ["DEFAULT_JITTER", "extend_lq", "causal_lq", "masked_upper_solve"]

DEFAULT_JITTER = 1e-7


def extend_lq(
    Q: Float[Array, "t n"],
    g: Float[Array, " n"],
    t: Int[Array, ""],
    jitter: float = DEFAULT_JITTER,
) -> tuple[Float[Array, " t"], Float[Array, "t n"], Bool[Array, ""]]:
    """Add row ``t`` of G: returns row t of 𝐋, Q with row t set, and whether the row is non-degenerate.

    ``Q`` holds orthonormal rows for the non-degenerate rows before t and zeros elsewhere.
    """
    c1 = Q @ g
    g1 = g - c1 @ Q
    c2 = Q @ g1
    g2 = g1 - c2 @ Q
    nrm = jnp.sqrt(jnp.sum(g2 * g2))
    ok = nrm > jitter * jnp.sqrt(jnp.sum(g * g))
    row = jnp.where(jnp.arange(Q.shape[0]) == t, jnp.where(ok, nrm, 0.0), c1 + c2)
    q = jnp.where(ok, g2 / jnp.where(ok, nrm, 1.0), 0.0)
    return row, Q.at[t].set(q), ok


def causal_lq(
    G: Float[Array, "t n"], jitter: float = DEFAULT_JITTER
) -> tuple[Float[Array, "t t"], Float[Array, "t n"], Bool[Array, " t"]]:
    """𝐋, Q and the non-degenerate rows of G = 𝐋Q, built row by row with :func:`extend_lq` (same result)."""
    T = G.shape[0]

    def body(Q: Array, t: Array) -> tuple[Array, tuple[Array, Array]]:
        row, Q, ok = extend_lq(Q, G[t], t, jitter)
        return Q, (row, ok)

    Q, (L, active) = jax.lax.scan(body, jnp.zeros_like(G), jnp.arange(T))
    return L, Q, active


def masked_upper_solve(
    L: Float[Array, "t t"], b: Float[Array, " t"], active: Bool[Array, " t"]
) -> Float[Array, " t"]:
    """Solve 𝐋ᵀx = b over the active indices only (inactive rows and columns dropped, x = 0 there)."""
    eye = jnp.eye(L.shape[0], dtype=L.dtype)
    A = jnp.where(active[:, None] & active[None, :], L, eye)
    x = solve_triangular(A, jnp.where(active, b, 0.0), lower=True, trans="T")
    return jnp.where(active, x, 0.0)
