"""Monte Carlo single-site engine: Gaussian sources, chunked sample averages, responses, damped outer iteration.

A generic engine for self-consistent "single-site" problems: given order parameters x (correlations and responses),
draw Gaussian source paths with covariances built from x, push each sample through a user-supplied causal scan,
average user-chosen statistics over the samples, rebuild x from the averages, and iterate

    x ← (1 − θ_g) x + θ_g F(x)        (θ_g: the mixing of group g, e.g. correlations vs responses)

to the fixed point. Nothing here knows what the samples mean. Pure JAX, float64-safe, jit-able.

* **Sources** (:func:`psd_factor`, :func:`gaussian_sources`): a factor F with FFᵀ = Σ + jitter·max diag(Σ)·I,
  by a symmetric eigendecomposition (negative eigenvalues clipped; rank-deficient Σ allowed) or by a Cholesky
  factorization (lower triangular: with time-major indices the source up to time t depends only on Σ up to time
  t, so the sampled map stays causal). Samples x = Fξ with ξ ~ N(0, I) drawn from a key that depends only on the
  chunk index: **common random numbers** across iterations, and the first n chunks are the same for every sample
  count (staged counts refine, they do not redraw).
* **Averages** (:func:`chunked_average`): samples are processed ``chunk`` at a time inside a ``lax.scan`` over
  chunks, so memory is O(chunk) whatever the sample count; the user's statistic returns (sums accumulated over
  chunks, small per-chunk values kept for batch-means error bars).
* **Responses**: :func:`mean_jacobian` (exact forward-mode Jacobian of a per-sample map, summed over the chunk)
  and :func:`stein_response` (Gaussian integration by parts, ⟨∂F/∂x⟩ = ⟨F xᵀ⟩Σ⁺, with an eigen-thresholded
  pseudo-inverse).
* **Outer iteration** (:func:`damped_iteration`): per group mixing, staged sample counts (each stage a
  ``lax.while_loop`` that stops at max|F(x) − x| < tol), averaging over the last iterates, residual history.

Batched LAPACK calls under ``vmap`` can deadlock jaxlib 0.10.1 on few CPU cores; the factorizations here use
:mod:`solvers.linalg`, which runs them one matrix at a time under ``vmap``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from .linalg import cholesky as _cholesky
from .linalg import eigh as _eigh

__all__ = [
    "psd_factor",
    "pinv_psd",
    "gaussian_sources",
    "chunked_average",
    "mean_jacobian",
    "stein_response",
    "IterationResult",
    "damped_iteration",
    "max_abs_change",
]


def _sym(a: Array) -> Array:
    return 0.5 * (a + a.T)


def psd_factor(
    cov: Float[Array, "n n"], *, jitter: float = 1e-10, method: str = "eigh"
) -> Float[Array, "n n"]:
    """F with F Fᵀ ≈ Σ (Σ symmetrized), jitter relative to the diagonal.

    ``method="eigh"``: F = V diag(√(max(λ, 0) + jitter·max diag Σ)) (any PSD Σ, also rank deficient; rounding
    negatives clipped). ``method="cholesky"``: the lower Cholesky factor of Σ + jitter·diag(Σ_ii + 10⁻⁸ max Σ_ii)
    (the jitter makes a rank-deficient Σ factorizable; row i of F depends on the leading i×i block of Σ only, up
    to the 10⁻⁸·jitter floor, so sources sampled from it are causal in a time-major index).
    """
    cov = _sym(cov)
    diag = jnp.maximum(jnp.diag(cov), 0.0)
    scale = jnp.maximum(jnp.max(diag), jnp.finfo(cov.dtype).tiny)
    if method == "eigh":
        lam, v = _eigh(cov)
        return v * jnp.sqrt(jnp.maximum(lam, 0.0) + jitter * scale)[None, :]
    if method == "cholesky":  # jitter per diagonal entry (keeps row i a function of the leading block only)
        eps = jitter * (diag + 1e-8 * scale)
        return _cholesky(cov + jnp.diag(eps))
    raise ValueError(f"psd_factor: method = {method!r}; must be 'eigh' or 'cholesky'")


def pinv_psd(cov: Float[Array, "n n"], *, rcond: float = 1e-10) -> Float[Array, "n n"]:
    """Eigen-thresholded pseudo-inverse of a symmetric PSD matrix (eigenvalues ≤ rcond·λ_max dropped)."""
    lam, v = _eigh(_sym(cov))
    keep = lam > rcond * jnp.maximum(jnp.max(lam), jnp.finfo(cov.dtype).tiny)
    inv = jnp.where(keep, 1.0 / jnp.where(keep, lam, 1.0), 0.0)
    return (v * inv[None, :]) @ v.T


def gaussian_sources(key: Array, factors: Any, n: int, antithetic: Any = None) -> Any:
    """``n`` samples x = Fξ for every factor F (n_i × k_i) of the pytree ``factors``: leaves (n, n_i).

    ξ of leaf i is drawn from ``fold_in(key, i)``, so each source keeps its numbers when others change.
    ``antithetic``: a pytree of bools with the structure of ``factors`` (None: all False). If any is set, sample
    j + n/2 repeats sample j with the flagged sources negated (``n`` even): antithetic pairs, which keep the
    joint law when the flagged sources are independent of the others and cancel the terms odd in them.
    """
    leaves, tree = jax.tree_util.tree_flatten(factors)
    flags = [False] * len(leaves) if antithetic is None else tree.flatten_up_to(antithetic)
    paired = any(flags)
    if paired and n % 2:
        raise ValueError(f"gaussian_sources: antithetic pairs need an even sample count, got {n}")
    out = []
    for i, (f, flip) in enumerate(zip(leaves, flags, strict=True)):
        if paired:  # sample j + n/2 is sample j with the flagged sources negated
            half = jax.random.normal(jax.random.fold_in(key, i), (n // 2, f.shape[1]), dtype=f.dtype)
            xi = jnp.concatenate([half, -half if flip else half])
        else:
            xi = jax.random.normal(jax.random.fold_in(key, i), (n, f.shape[1]), dtype=f.dtype)
        out.append(xi @ f.T)
    return jax.tree_util.tree_unflatten(tree, out)


def chunked_average(
    stat: Callable[[Any, Float[Array, " c"]], tuple[Any, Any]],
    key: Array,
    factors: Any,
    *,
    samples: int,
    chunk: int,
    antithetic: Any = None,
) -> tuple[Any, Any]:
    """Sample means of a user statistic over ``samples`` source draws, ``chunk`` at a time.

    ``stat(sources, weights)`` receives one chunk of sources (pytree of (chunk, n_i), from
    :func:`gaussian_sources` with key ``fold_in(key, chunk_index)``) and 0/1 weights (0 on padding past
    ``samples``) and returns ``(sums, per_chunk)``: weighted sums over the chunk, accumulated over chunks, and
    small values kept per chunk (e.g. for batch-means errors). ``antithetic``: see :func:`gaussian_sources` (pairs
    within each chunk; ``chunk`` and ``samples`` even; a partial last chunk keeps whole pairs). Returns
    ``(sums / samples, per_chunk stacked along a leading chunk axis)``; the user normalizes ``per_chunk`` (each
    full chunk holds ``chunk`` samples).
    """
    n_chunks = -(-samples // chunk)
    idx = jnp.arange(n_chunks)
    paired = antithetic is not None and any(jax.tree_util.tree_leaves(antithetic))
    if paired and (chunk % 2 or samples % 2):
        raise ValueError(f"chunked_average: antithetic pairs need even chunk and samples, got {chunk}, {samples}")

    def body(acc: Any, i: Array) -> tuple[Any, Any]:
        src = gaussian_sources(jax.random.fold_in(key, i), factors, chunk, antithetic)
        valid = jnp.clip(samples - i * chunk, 0, chunk)
        j = jnp.arange(chunk)
        if paired:  # keep whole pairs (j, j + chunk/2) of a partial last chunk
            w = ((j % (chunk // 2)) < valid // 2).astype(jnp.result_type(float))
        else:
            w = (j < valid).astype(jnp.result_type(float))
        sums, per = stat(src, w)
        acc = sums if acc is None else jax.tree_util.tree_map(jnp.add, acc, sums)
        return acc, per

    sums0, _ = jax.eval_shape(lambda: stat(gaussian_sources(key, factors, chunk), jnp.ones(chunk)))
    zero = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), sums0)
    sums, per = jax.lax.scan(body, zero, idx)
    return jax.tree_util.tree_map(lambda s: s / samples, sums), per


def mean_jacobian(
    fn: Callable[..., Array], x: Float[Array, "c n"], weights: Float[Array, " c"], *args: Array
) -> Float[Array, "m n"]:
    """Σ_c w_c ∂fn(x_c, *args_c)/∂x_c: forward-mode Jacobians (n tangents per sample) summed over a chunk.

    ``args`` are further per-sample inputs (leading chunk axis) held fixed. Cost: n passes of ``fn`` per sample.
    """
    jac = jax.vmap(jax.jacfwd(fn))(x, *args)
    return jnp.tensordot(weights, jac, axes=1)


def stein_response(
    cross: Float[Array, "m n"], cov: Float[Array, "n n"], *, rcond: float = 1e-10
) -> Float[Array, "m n"]:
    """⟨∂F/∂x⟩ ≈ ⟨F xᵀ⟩ Σ⁺ for x ~ N(0, Σ) (Stein's lemma; exact on range(Σ)). ``cross`` = ⟨F xᵀ⟩."""
    return cross @ pinv_psd(cov, rcond=rcond)


def max_abs_change(a: Any, b: Any) -> Array:
    """max over leaves of max|a − b| (0 for empty leaves)."""
    leaves = jax.tree_util.tree_leaves(
        jax.tree_util.tree_map(lambda u, v: jnp.max(jnp.abs(u - v), initial=0.0), a, b)
    )
    return jnp.max(jnp.stack(leaves)) if leaves else jnp.asarray(0.0)


class IterationResult(NamedTuple):
    """Outcome of :func:`damped_iteration`.

    ``x``: the final order parameters (average of the last iterates); ``fx``, ``aux``: F and its auxiliary output
    at ``x`` (one more evaluation with ``final=True``); ``residual``: max|F(x) − x| there; ``history``: the
    residual of every iteration of every stage (NaN where unused); ``iterations``: iterations run per stage.
    """

    x: Any
    fx: Any
    aux: Any
    residual: Float[Array, ""]
    converged: Bool[Array, ""]
    history: Float[Array, " n"]
    iterations: Int[Array, " stages"]


def damped_iteration(
    update: Callable[[Any, int, bool], tuple[Any, Any]],
    x0: Any,
    *,
    mixing: Any,
    stages: Sequence[tuple[int, int]],
    tol: float | Array = 0.0,
    average: int = 1,
) -> IterationResult:
    """Damped outer fixed-point iteration x ← (1 − θ)x + θF(x), in stages of growing sample count.

    ``update(x, samples, final) -> (F(x), aux)`` (``samples`` and ``final`` static). ``mixing``: θ per leaf
    group, a prefix pytree of ``x`` (e.g. ``{"corr": 0.7, "resp": 0.3}`` for ``x = {"corr": ..., "resp":
    ...}``). ``stages``: ``(samples, max_iterations)`` pairs run in order; each stage stops early when the
    convergence metric max|F(x) − x| falls below ``tol`` or is not finite. The last stage then runs ``average``
    further iterations and x is their mean (``average = 1``: the last iterate); F is evaluated once more there
    with ``final=True``.
    """
    theta = jax.tree_util.tree_map(lambda m, xs: jax.tree_util.tree_map(lambda _: m, xs), mixing, x0)

    def mix(x: Any, fx: Any) -> Any:
        return jax.tree_util.tree_map(lambda a, b, th: (1 - th) * a + th * b, x, fx, theta)

    x = x0
    hists, its = [], []
    for samples, max_iter in stages:
        hist0 = jnp.full(max_iter, jnp.nan)

        def cond(s: tuple[Any, Array, Array, Array]) -> Array:
            _, res, it, _ = s
            return (it < max_iter) & ((it == 0) | ((res >= tol) & jnp.isfinite(res)))

        def body(s: tuple[Any, Array, Array, Array], samples: int = samples) -> tuple[Any, Array, Array, Array]:
            xc, _, it, hist = s
            fx, _ = update(xc, samples, False)
            res = max_abs_change(fx, xc)
            return mix(xc, fx), res, it + 1, hist.at[it].set(res)

        x, _, it, hist = jax.lax.while_loop(cond, body, (x, jnp.asarray(jnp.inf), jnp.asarray(0), hist0))
        hists.append(hist)
        its.append(it)
    samples = stages[-1][0]
    if average > 1:

        def avg_body(xc: Any, _: None) -> tuple[Any, Any]:
            fx, _ = update(xc, samples, False)
            xn = mix(xc, fx)
            return xn, xn

        _, xs = jax.lax.scan(avg_body, x, None, length=average)
        x = jax.tree_util.tree_map(lambda a: jnp.mean(a, axis=0), xs)
    fx, aux = update(x, samples, True)
    res = max_abs_change(fx, x)
    return IterationResult(x, fx, aux, res, res <= tol, jnp.concatenate(hists), jnp.stack(its))
