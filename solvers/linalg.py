"""Dense eigen/singular-value routines that never issue a batched LAPACK call on CPU.

jaxlib 0.10 runs a batched CPU LAPACK kernel (syevd, gesdd, getrf, ...) by fanning the batch out onto XLA's intra-op
thread pool and blocking until the chunks are done (``jax::ParallelBatchMap``). When as many such calls as the pool
has threads run at the same time (independent branches of one program, typically under ``vmap``), every pool thread
waits for work that only the pool can do, and the process deadlocks with all threads asleep. This was reproduced here
on 2 cores (``outliers_over_time`` hung within a minute; native stacks: both ``tf_XLAEigen`` workers in
``BlockingCounter::Wait`` under ``lapack_dsyevd_ffi``); ``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false`` avoids it,
and later jaxlib builds compile the parallel path out.

The wrappers below are the plain single-matrix routines; under ``vmap`` they become a sequential ``lax.map`` of
single-matrix calls (batch 1, run inline), so the spectra code is safe whatever the flags. The matrices here are
small (≤ a few hundred), so the sequential loop costs little.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.custom_batching import custom_vmap
from jaxtyping import Array, Float

__all__ = ["eigh", "eigvalsh", "svd", "svdvals", "slogdet", "cholesky"]


def _sequential_under_vmap(fn: Callable[[Array], Any]) -> Callable[[Array], Any]:
    """fn of one matrix; under vmap, lax.map over the batch instead of one batched call."""
    f = custom_vmap(fn)

    @f.def_vmap
    def _rule(axis_size: int, in_batched: list[bool], a: Array) -> tuple[Any, Any]:
        if not in_batched[0]:
            out = f(a)
            return out, jax.tree.map(lambda _: False, out)
        out = jax.lax.map(f, a)
        return out, jax.tree.map(lambda _: True, out)

    return f


@_sequential_under_vmap
def eigh(a: Float[Array, "k k"]) -> tuple[Float[Array, " k"], Float[Array, "k k"]]:
    """Eigenvalues (ascending) and eigenvectors of a symmetric matrix."""
    return jnp.linalg.eigh(a)


@_sequential_under_vmap
def eigvalsh(a: Float[Array, "k k"]) -> Float[Array, " k"]:
    """Eigenvalues (ascending) of a symmetric matrix."""
    return jnp.linalg.eigvalsh(a)


@_sequential_under_vmap
def svd(a: Float[Array, "m n"]) -> tuple[Float[Array, "m k"], Float[Array, " k"], Float[Array, "k n"]]:
    """Thin SVD (U, singular values descending, Vᵀ)."""
    return jnp.linalg.svd(a, full_matrices=False)


@_sequential_under_vmap
def svdvals(a: Float[Array, "m n"]) -> Float[Array, " k"]:
    """Singular values, descending."""
    return jnp.linalg.svd(a, compute_uv=False)


@_sequential_under_vmap
def slogdet(a: Float[Array, "k k"]) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """(sign, log|det|)."""
    sign, logabs = jnp.linalg.slogdet(a)
    return sign, logabs


@_sequential_under_vmap
def cholesky(a: Float[Array, "k k"]) -> Float[Array, "k k"]:
    """Lower Cholesky factor of a symmetric positive-definite matrix."""
    return jnp.linalg.cholesky(a)
