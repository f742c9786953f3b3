r"""Quadrature of the laws the theory averages over (extensive_outputs.md §5, §6, §8).

Marchenko–Pastur law of the eigenvalues of MMᵀ, M n×m with iid entries of variance σ²/m, ratio q = n/m
(conventions.md §7): continuous part on [x₋, x₊], x± = σ²(1 ± √q)², plus an atom 1 − 1/q at 0 when q > 1.
In the angle variable x(θ) = σ²(1 + q + 2√q cos θ) its continuous part is p(x)dx = (2σ²/(πq))·sin²θ/x(θ)·dθ...
normalized here numerically per cell: the cells are θ ∈ [jπ/n, (j+1)π/n] (dense at both edges, smooth at the
hard edge x₋ = 0 of q = 1), each with its exact-to-O(n⁻²) mass; nodes are the cell midpoints.

The laws used:
* row variances of the frozen readout, s = eig(VᵀV) over the N rows: σ_w²ν·(law of GᵀG/N, G C×N), i.e. MP with
  ratio N/C and σ² = C/N — an atom 1 − C/N at s = 0 when C < N;
* input covariance λ = eig(XᵀX/P) over the D columns: MP with ratio 1/α, σ² = 1 — an atom 1 − α at 0 when α < 1;
* teacher modes b² = eig of BBᵀ (κ ≤ 1: MP(κ), σ² = ρ*) or BᵀB (κ > 1: MP(1/κ), σ² = ρ*κ), over min(C, D) modes.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from jaxtyping import Array, Float

__all__ = ["Law", "mp_law", "row_law", "data_law", "teacher_law", "point_law"]


class Law(NamedTuple):
    """A discrete law: ``nodes`` (n,) with ``weights`` (n,) summing to 1 (atoms included as nodes), and the
    continuous part's cell ``edges`` (n_cells + 1,) in the same variable (for piecewise-linear CDFs)."""

    nodes: Float[Array, " n"]
    weights: Float[Array, " n"]
    edges: Float[Array, " m"]
    cell_weights: Float[Array, " m1"]
    atom_value: Float[Array, ""]
    atom: Float[Array, ""]


def _x_of_theta(theta: Array, q: Array, s2: Array) -> Array:
    return s2 * (1.0 + q + 2.0 * jnp.sqrt(q) * jnp.cos(theta))


def mp_law(q: Float[Array, ""] | float, sigma2: Float[Array, ""] | float, n: int) -> Law:
    """MP law of ratio q and scale σ² with n cells (plus the atom at 0 of mass max(0, 1 − 1/q) as last node)."""
    q = jnp.asarray(q, dtype=jnp.float64)
    s2 = jnp.asarray(sigma2, dtype=jnp.float64)
    # Cells (for piecewise-linear CDFs): θ ∈ [jπ/n, (j+1)π/n], masses by the midpoint rule in θ, where
    # sin²θ/x(θ) is smooth (finite at x = 0 for q = 1), renormalized to the continuous mass.
    theta_e = jnp.linspace(jnp.pi, 0.0, n + 1)  # ascending x
    theta_m = 0.5 * (theta_e[1:] + theta_e[:-1])
    x_m = _x_of_theta(theta_m, q, s2)
    dens = jnp.sin(theta_m) ** 2 / jnp.where(x_m > 0, x_m, 1.0)
    cont = jnp.minimum(1.0, 1.0 / q)
    w = cont * dens / jnp.sum(dens)
    atom = 1.0 - cont
    # Quadrature (for expectations): Gauss–Chebyshev of the second kind in θ, E f = f(0) + Σ wᵢ(f(xᵢ) − f(0)),
    # exact for polynomials of degree ≤ 2n (moments exact), the atom carried by the node at 0 (weight 1 − Σwᵢ).
    theta_q = jnp.arange(1, n + 1, dtype=jnp.float64) * (jnp.pi / (n + 1))
    x_q = _x_of_theta(theta_q, q, s2)
    w_q = (2.0 * s2 / (n + 1)) * jnp.sin(theta_q) ** 2 / jnp.where(x_q > 0, x_q, 1.0)
    nodes = jnp.concatenate([x_q, jnp.zeros(1)])
    weights = jnp.concatenate([w_q, (1.0 - jnp.sum(w_q))[None]])
    return Law(nodes, weights, _x_of_theta(theta_e, q, s2), w, jnp.zeros(()), atom)


def row_law(nu: float, kappa: float, sigma_w: float, n: int) -> Law:
    """Law of the row variances s = eig(VᵀV) over the N rows (frozen readout): σ_w²ν·MP(N/C, σ² = C/N)."""
    qc = jnp.asarray(kappa / nu, dtype=jnp.float64)
    law = mp_law(1.0 / qc, qc, n)
    f = sigma_w**2 * nu
    return law._replace(nodes=f * law.nodes, edges=f * law.edges)


def data_law(alpha: float, n: int) -> Law:
    """Law of λ = eig(XᵀX/P): MP(1/α, σ² = 1), atom 1 − α at 0 when α < 1; λ ≡ 1 at α = ∞."""
    if alpha == float("inf"):
        return point_law(1.0)
    return mp_law(1.0 / alpha, 1.0, n)


def point_law(value: float) -> Law:
    """A single atom."""
    one = jnp.ones(1)
    return Law(value * one, one, value * jnp.ones(2), jnp.zeros(1), jnp.asarray(float(value)), jnp.ones(()))


def teacher_law(kappa: float, rho: float, n: int) -> Law:
    """Law of the teacher singular values b (not b²) over the min(C, D) modes: b² ~ ρ*MP(κ) (κ ≤ 1) or
    ρ*κ·MP(1/κ) (κ > 1); nodes, cell edges as b."""
    law = mp_law(kappa, rho, n) if kappa <= 1 else mp_law(1.0 / kappa, rho * kappa, n)
    return law._replace(nodes=jnp.sqrt(law.nodes), edges=jnp.sqrt(jnp.clip(law.edges, 0.0)))
