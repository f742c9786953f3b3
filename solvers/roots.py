"""Bracketed root finding for scalar functions, jit- and vmap-able (no knowledge of the problem).

* :func:`chandrupatla`: refine a sign-changing bracket [lo, hi] to a root. Chandrupatla's method (1997): inverse
  quadratic interpolation when the last three points make it safe, bisection otherwise; the bracket always
  shrinks, so it converges for any continuous f, superlinearly for smooth f. Fixed-shape `lax.while_loop`:
  under `vmap` every lane iterates until all are done, finished lanes are frozen.
* :func:`sign_change_brackets`: the brackets of a sampled function, largest abscissae first, padded to a fixed
  number (so the count of roots may vary under `vmap`).
* :func:`local_minima`: interior local minima of sampled values (candidates for roots of even multiplicity,
  which a sign scan misses), and :func:`golden_section` to refine them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int

__all__ = ["RootResult", "chandrupatla", "sign_change_brackets", "local_minima", "golden_section"]


class RootResult(NamedTuple):
    """Result of :func:`chandrupatla`: the root, f there, whether the bracket met the tolerance, iterations."""

    x: Float[Array, "*batch"]
    fx: Float[Array, "*batch"]
    converged: Bool[Array, "*batch"]
    iterations: Int[Array, "*batch"]


class _State(NamedTuple):
    x1: Array
    f1: Array
    x2: Array
    f2: Array
    x3: Array
    f3: Array
    t: Array
    it: Array
    done: Array


def chandrupatla(
    f: Callable[[Array], Array],
    lo: ArrayLike,
    hi: ArrayLike,
    *,
    xtol: float = 0.0,
    rtol: float = 4e-16,
    maxiter: int = 200,
) -> RootResult:
    """A root of the scalar function f in the bracket [lo, hi] (f(lo)·f(hi) ≤ 0 is required).

    Stops when the bracket is narrower than 2·(xtol + rtol·|x|) or f vanishes exactly. If the bracket has no sign
    change the result is NaN with ``converged`` False. Scalar lo, hi; use `jax.vmap` for many brackets.
    """
    lo = jnp.asarray(lo, dtype=jnp.result_type(float, lo))
    hi = jnp.asarray(hi, dtype=lo.dtype)
    flo, fhi = f(lo), f(hi)
    bracketed = (jnp.sign(flo) * jnp.sign(fhi) <= 0) & jnp.isfinite(flo) & jnp.isfinite(fhi)

    def tol_of(s: _State) -> tuple[Array, Array, Array]:
        small = jnp.abs(s.f1) < jnp.abs(s.f2)
        xm = jnp.where(small, s.x1, s.x2)
        fm = jnp.where(small, s.f1, s.f2)
        tol = 2 * rtol * jnp.abs(xm) + xtol
        return xm, fm, tol / jnp.maximum(jnp.abs(s.x2 - s.x1), jnp.finfo(lo.dtype).tiny)

    def cond(s: _State) -> Array:
        return (~s.done) & (s.it < maxiter)

    def body(s: _State) -> _State:
        xt = s.x1 + s.t * (s.x2 - s.x1)
        ft = f(xt)
        same = jnp.sign(ft) == jnp.sign(s.f1)
        x3, f3 = jnp.where(same, s.x1, s.x2), jnp.where(same, s.f1, s.f2)
        x2, f2 = jnp.where(same, s.x2, s.x1), jnp.where(same, s.f2, s.f1)
        s = _State(xt, ft, x2, f2, x3, f3, s.t, s.it + 1, s.done)
        _, fm, tl = tol_of(s)
        done = (tl > 0.5) | (fm == 0) | ~jnp.isfinite(ft)
        xi = (s.x1 - s.x2) / (s.x3 - s.x2)
        phi = (s.f1 - s.f2) / (s.f3 - s.f2)
        iqi = (phi**2 < xi) & ((1 - phi) ** 2 < 1 - xi)
        t_iqi = s.f1 / (s.f2 - s.f1) * s.f3 / (s.f2 - s.f3) + (s.x3 - s.x1) / (s.x2 - s.x1) * s.f1 / (
            s.f3 - s.f1
        ) * s.f2 / (s.f3 - s.f2)
        t = jnp.where(iqi, t_iqi, 0.5)
        t = jnp.clip(jnp.where(jnp.isfinite(t), t, 0.5), tl, 1 - tl)
        return s._replace(t=t, done=done)

    init = _State(hi, fhi, lo, flo, lo, flo, jnp.asarray(0.5, lo.dtype), jnp.asarray(0), ~bracketed)
    s = jax.lax.while_loop(cond, body, init)
    xm, fm, tl = tol_of(s)
    converged = bracketed & jnp.isfinite(fm) & ((tl > 0.5) | (fm == 0))
    nan = jnp.asarray(jnp.nan, lo.dtype)
    return RootResult(jnp.where(bracketed, xm, nan), jnp.where(bracketed, fm, nan), converged, s.it)


def _last_true(mask: Bool[Array, " n"], k: int) -> tuple[Int[Array, " k"], Bool[Array, " k"]]:
    """Indices of the last k True entries of mask, largest first, and which of the k slots are filled."""
    n = mask.shape[0]
    (idx,) = jnp.nonzero(mask[::-1], size=k, fill_value=n)
    valid = idx < n
    return jnp.where(valid, n - 1 - idx, 0), valid


def sign_change_brackets(
    x: Float[Array, " n"], fx: Float[Array, " n"], k: int
) -> tuple[Float[Array, " k"], Float[Array, " k"], Bool[Array, " k"]]:
    """The k sign-change brackets [x_i, x_{i+1}] of samples fx = f(x) with the largest x (x increasing).

    A sign change is f(x_i) > 0 ≠ f(x_{i+1}) > 0 between finite samples. Returns (lo, hi, valid), NaN-padded.
    """
    pos = fx > 0
    change = (pos[:-1] != pos[1:]) & jnp.isfinite(fx[:-1]) & jnp.isfinite(fx[1:])
    i, valid = _last_true(change, k)
    nan = jnp.full((k,), jnp.nan, x.dtype)
    return jnp.where(valid, x[i], nan), jnp.where(valid, x[i + 1], nan), valid


def local_minima(values: Float[Array, " n"], k: int) -> tuple[Int[Array, " k"], Bool[Array, " k"]]:
    """Indices i (0 < i < n−1) of the k rightmost strict-left local minima v[i−1] > v[i] ≤ v[i+1], and validity."""
    interior = (values[1:-1] < values[:-2]) & (values[1:-1] <= values[2:])
    i, valid = _last_true(interior, k)
    return i + 1, valid


def golden_section(
    f: Callable[[Array], Array], lo: ArrayLike, hi: ArrayLike, *, n_iter: int = 80
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """Minimiser and minimum of a unimodal scalar f on [lo, hi] by golden-section search (fixed n_iter)."""
    lo = jnp.asarray(lo, dtype=jnp.result_type(float, lo))
    hi = jnp.asarray(hi, dtype=lo.dtype)
    r = (jnp.sqrt(5.0) - 1) / 2

    def body(_: int, s: tuple[Array, ...]) -> tuple[Array, ...]:
        a, b, c, fc, d, fd = s
        left = fc < fd  # minimum in [a, d]
        a, b = jnp.where(left, a, c), jnp.where(left, d, b)
        c_new = jnp.where(left, b - r * (b - a), d)
        d_new = jnp.where(left, c, a + r * (b - a))
        x_eval = jnp.where(left, c_new, d_new)
        fx = f(x_eval)
        fc_new, fd_new = jnp.where(left, fx, fd), jnp.where(left, fc, fx)
        return a, b, c_new, fc_new, d_new, fd_new

    c, d = hi - r * (hi - lo), lo + r * (hi - lo)
    a, b, c, fc, d, fd = jax.lax.fori_loop(0, n_iter, body, (lo, hi, c, f(c), d, f(d)))
    x = jnp.where(fc < fd, c, d)
    return x, jnp.minimum(fc, fd)
