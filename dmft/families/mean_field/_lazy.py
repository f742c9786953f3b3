"""Lazy (static-NTK) oracle (mean_field.md §5): γ0 → 0 at fixed η freezes every kernel at its t = 0 value.

    Δ(t) = (I − (η/P) K_tr(0))^t y,     f_test(t) = (η/P) K_te,tr(0) Σ_{s<t} Δ(s)

with K(0) the t = 0 tangent kernel on all M = P + Q points (:func:`initial_kernels`); the test outputs are those
of the frozen-kernel (linearised) network.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

__all__ = ["LazyPrediction", "lazy_oracle"]


class LazyPrediction(NamedTuple):
    """Outputs f on all M points, training residuals Δ and the training loss ½P⁻¹|Δ|² at t = 0..T−1."""

    f: Float[Array, "T M"]
    delta: Float[Array, "T P"]
    train_loss: Float[Array, " T"]


def lazy_oracle(k0: Float[Array, "M M"], y: Float[Array, " P"], *, lr: float, steps: int) -> LazyPrediction:
    """Static-NTK GD from f(0) = 0 with the kernel K(0) on M ≥ P points (training points first)."""
    k0 = jnp.asarray(k0, dtype=float)
    y = jnp.asarray(y, dtype=float)
    p = y.shape[0]

    def step(f: Array, _: None) -> tuple[Array, Array]:
        delta = y - f[:p]
        return f + (lr / p) * k0[:, :p] @ delta, f

    _, fs = jax.lax.scan(step, jnp.zeros(k0.shape[0]), None, length=steps)
    delta = y[None, :] - fs[:, :p]
    return LazyPrediction(fs, delta, 0.5 * jnp.mean(delta**2, axis=1))
