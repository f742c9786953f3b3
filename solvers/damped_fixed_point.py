"""Damped fixed-point (Picard) iteration x ← (1 − θ)x + θF(x) on a pytree, with a residual history.

Pure JAX (`lax.while_loop`), jit- and vmap-able; no knowledge of the problem. The residual of an iterate is
max over leaves of max|F(x) − x|. The loop stops when it falls below ``tol`` (then F(x) is returned, undamped)
or is not finite, or after ``max_iter`` evaluations of F.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

__all__ = ["FixedPointResult", "damped_fixed_point"]


class FixedPointResult(NamedTuple):
    """``x``: last iterate; ``residual``: its max|F(x) − x|; ``history``: residual per iteration (NaN
    unused)."""

    x: Any
    residual: Float[Array, ""]
    iterations: Int[Array, ""]
    converged: Bool[Array, ""]
    history: Float[Array, " n"]


def _max_abs_diff(a: Any, b: Any) -> Array:
    leaves = jax.tree_util.tree_leaves(jax.tree_util.tree_map(lambda u, v: jnp.max(jnp.abs(u - v)), a, b))
    return jnp.max(jnp.stack(leaves))


def damped_fixed_point(
    F: Callable[[Any], Any],
    x0: Any,
    *,
    damping: float | Array = 0.5,
    tol: float | Array = 1e-8,
    max_iter: int = 100,
) -> FixedPointResult:
    """Iterate x ← (1 − θ)x + θF(x) from ``x0`` until max|F(x) − x| < ``tol`` (θ = ``damping``)."""
    hist0 = jnp.full(max_iter, jnp.nan)
    big = jnp.asarray(jnp.inf)

    def cond(s: tuple[Any, Array, Array, Array]) -> Array:
        _, res, it, _ = s
        return (it < max_iter) & (res >= tol) & ~jnp.isnan(res)

    def body(s: tuple[Any, Array, Array, Array]) -> tuple[Any, Array, Array, Array]:
        x, _, it, hist = s
        fx = F(x)
        res = _max_abs_diff(fx, x)
        done = res < tol
        x_new = jax.tree_util.tree_map(
            lambda a, b: jnp.where(done, b, (1 - damping) * a + damping * b), x, fx
        )
        return x_new, res, it + 1, hist.at[it].set(res)

    x, res, it, hist = jax.lax.while_loop(cond, body, (x0, big, jnp.asarray(0), hist0))
    return FixedPointResult(x, res, it, res < tol, hist)
