"""One coordinate of the diagonal linear network: the two forms, their GD step, the teacher prior.

Conventions (shared/theory/conventions.md §5, diagonal_linear.md §1). With q̂ = √D XᵀΔ/P the error-weighted
input and every parameter updated as θ ← θ − η(D ∂L/∂θ + λθ) (λ = ``optim.weight_decay``):

    form "uv":  β = u v,           u(0) = a, v(0) = 0:     u ← (1 − ηλ)u + η v q̂,    v ← (1 − ηλ)v + η u q̂
    form "pm":  β = u₊² − u₋²,     u±(0) = a:              u± ← (1 − ηλ ± 2η q̂) u±

The factors are integrated directly, never the sinh map β = (a²/2) sinh(2Q) of gradient flow: no overflow at
small a, and the discrete step is exact (it breaks the conservation law u² − v² = a² by (1 − η²q̂²) per step).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtri
from jaxtyping import Array, ArrayLike, Float

import dmft._jax  # noqa: F401  (refuses known-bad JAX versions)

__all__ = ["Params", "FORMS", "PRIORS", "init_state", "beta_of", "step", "lazy_rate", "sample_teacher"]

FORMS = ("uv", "pm")
PRIORS = ("gaussian", "sparse")

State = tuple[Array, Array]


class Params(NamedTuple):
    """The vmappable numbers of one run (a pytree of scalars: stack them to batch runs)."""

    lr: ArrayLike  # η
    init_scale: ArrayLike  # a
    alpha: ArrayLike  # α = P/D
    noise: ArrayLike  # σ_ε
    weight_decay: ArrayLike  # λ
    teacher_variance: ArrayLike  # ρ* = E β*²
    sparsity: ArrayLike  # fraction of nonzero teacher entries (sparse prior only)


def init_state(p: Params, shape: tuple[int, ...], form: str) -> State:
    """(u, v) = (a, 0) for "uv"; (u₊, u₋) = (a, a) for "pm"."""
    a = jnp.full(shape, p.init_scale, dtype=jnp.float64)
    return (a, jnp.zeros_like(a)) if form == "uv" else (a, a)


def beta_of(w: State, form: str) -> Array:
    """β = u v ("uv") or u₊² − u₋² ("pm")."""
    return w[0] * w[1] if form == "uv" else w[0] * w[0] - w[1] * w[1]


def step(w: State, qhat: Array, p: Params, form: str) -> State:
    """One full-batch GD step of the factors given the error-weighted input q̂ (module docstring)."""
    decay = 1.0 - p.lr * p.weight_decay
    if form == "uv":
        u, v = w
        return decay * u + p.lr * v * qhat, decay * v + p.lr * u * qhat
    up, um = w
    return (decay + 2 * p.lr * qhat) * up, (decay - 2 * p.lr * qhat) * um


def lazy_rate(p: Params, form: str) -> Array:
    """η_lazy, the step of β in the lazy limit β(t+1) = β(t) + η_lazy q̂: ηa² ("uv") or 8ηa² ("pm")."""
    return (1.0 if form == "uv" else 8.0) * p.lr * jnp.asarray(p.init_scale) ** 2


def sample_teacher(key: Array, n: int, p: Params, prior: str, stratified: bool = True) -> Float[Array, " n"]:
    """n teacher entries β*_a from the prior, E β*² = ρ*.

    * "gaussian": β* ~ N(0, ρ*);
    * "sparse": β* = B·G with B ~ Bernoulli(s), G ~ N(0, ρ*/s) (s = ``sparsity``).

    With ``stratified`` (the Monte Carlo samples of the theory) the Gaussian values are stratified quantiles
    Φ⁻¹((k + U_k)/n) in random order, exactly round(s·n) entries are nonzero, and the result is rescaled to
    second moment exactly ρ*. Without it (the finite-width twin) the entries are plain iid draws.
    """
    k_g, k_perm, k_u, k_mask = jax.random.split(key, 4)
    if stratified:
        u = (jax.random.permutation(k_perm, n).astype(jnp.float64) + jax.random.uniform(k_u, (n,))) / n
        g = ndtri(u)
        nonzero = (jax.random.permutation(k_mask, n).astype(jnp.float64) + 0.5) / n < p.sparsity
    else:
        g = jax.random.normal(k_g, (n,))
        nonzero = jax.random.uniform(k_mask, (n,)) < p.sparsity
    if prior == "sparse":
        g = jnp.where(nonzero, g, 0.0) / jnp.sqrt(p.sparsity)
    beta = jnp.sqrt(p.teacher_variance) * g
    if stratified:
        m2 = jnp.mean(beta * beta)
        beta = jnp.where(m2 > 0, beta * jnp.sqrt(p.teacher_variance / jnp.where(m2 > 0, m2, 1.0)), 0.0)
    return beta
