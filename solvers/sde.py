"""Euler–Maruyama integration of Itô SDEs with diagonal noise, recorded every k steps.

Integrates

    dx = f(t, x) dt + g(t, x) ∘ dB_t        (Itô; g broadcasts against x, elementwise noise)

with the explicit scheme (weak order 1; strong order 1 for additive noise, 1/2 otherwise)

    x_{k+1} = P( x_k + h f(t_k, x_k) + √h g(t_k, x_k) ∘ N_k ),   N_k ~ N(0, I) iid,   t_k = k h,

where P is an optional projection applied after each step (e.g. sorting, reflection at a wall). The state is
any pytree of arrays. Time is marched with ``lax.scan`` (an outer scan over records and an inner one over the
``record_every`` steps between them), so the cost of a run is one compile whatever its length, and the whole
integrator is jit- and vmap-able (vmap over keys and initial states gives an ensemble).

Knows nothing about neural networks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray, PyTree

__all__ = ["euler_maruyama", "em_step"]

Drift = Callable[[Array, PyTree, Any], PyTree]
Diffusion = Callable[[Array, PyTree, Any], PyTree]


def _normal_like(key: PRNGKeyArray, tree: PyTree) -> PyTree:
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    keys = [key] if len(leaves) == 1 else jax.random.split(key, len(leaves))
    noise = [
        jax.random.normal(k, jnp.shape(x), jnp.result_type(x)) for k, x in zip(keys, leaves, strict=True)
    ]
    return jax.tree_util.tree_unflatten(treedef, noise)


def em_step(
    drift: Drift,
    diffusion: Diffusion,
    t: Array,
    x: PyTree,
    key: PRNGKeyArray,
    dt: Array | float,
    args: Any = None,
    project: Callable[[PyTree], PyTree] | None = None,
) -> PyTree:
    """One Euler–Maruyama step x ↦ P(x + h f(t, x) + √h g(t, x) ∘ N)."""
    f = drift(t, x, args)
    g = diffusion(t, x, args)
    n = _normal_like(key, x)
    sq = jnp.sqrt(dt)
    new = jax.tree_util.tree_map(lambda xi, fi, gi, ni: xi + dt * fi + sq * gi * ni, x, f, g, n)
    return project(new) if project is not None else new


def euler_maruyama(
    drift: Drift,
    diffusion: Diffusion,
    x0: PyTree,
    key: PRNGKeyArray,
    dt: Array | float,
    n_records: int,
    record_every: int = 1,
    args: Any = None,
    observe: Callable[[Array, PyTree, Any], PyTree] | None = None,
    project: Callable[[PyTree], PyTree] | None = None,
    tail: int = 0,
) -> tuple[PyTree, PyTree]:
    """Integrate from ``x0`` for ``(n_records - 1) * record_every + tail`` steps of size ``dt``.

    Args:
      drift, diffusion: ``f(t, x, args)`` and ``g(t, x, args)``; ``g`` returns a pytree like ``x`` (or of
        leaves broadcastable to it) giving the elementwise noise amplitude.
      x0: initial state (pytree of float arrays).
      key: PRNG key; step k uses its own fold of ``key``, so runs are reproducible and independent of
        ``record_every``.
      dt: step size h (may be traced, e.g. vmapped over).
      n_records: number of recorded states, the first being ``x0`` (static).
      record_every: steps between records (static).
      observe: ``obs(t, x, args)`` evaluated at each record (default: the state itself); record only what you
        need to keep memory at O(n_records · size of obs).
      project: optional map applied after every step.
      tail: steps after the last regular record, followed by one more record (static; 0: none). With it the
        records can end at any step, e.g. the last one of a run whose length is not a multiple of ``record_every``.

    Returns:
      ``(records, x_final)``: ``records`` stacks ``observe`` along a new leading axis of length ``n_records``
      (times 0, k h, 2k h, ...), plus one at the end of the tail; ``x_final`` is the state at the last record.
    """
    obs = observe if observe is not None else (lambda t, x, a: x)
    dt = jnp.asarray(dt, dtype=jax.tree_util.tree_leaves(x0)[0].dtype)

    def inner(carry: tuple[PyTree, Array], _: None) -> tuple[tuple[PyTree, Array], None]:
        x, k = carry
        t = k.astype(dt.dtype) * dt
        x = em_step(drift, diffusion, t, x, jax.random.fold_in(key, k), dt, args, project)
        return (x, k + 1), None

    def outer(carry: tuple[PyTree, Array], _: None) -> tuple[tuple[PyTree, Array], PyTree]:
        carry, _ = jax.lax.scan(inner, carry, None, length=record_every)
        x, k = carry
        return carry, obs(k.astype(dt.dtype) * dt, x, args)

    k0 = jnp.asarray(0, dtype=jnp.int32)
    first = obs(jnp.zeros((), dt.dtype), x0, args)
    carry, rest = jax.lax.scan(outer, (x0, k0), None, length=n_records - 1)
    parts = [jax.tree_util.tree_map(lambda a: a[None], first), rest]
    if tail:
        carry, _ = jax.lax.scan(inner, carry, None, length=tail)
        parts.append(jax.tree_util.tree_map(lambda a: a[None], obs(carry[1].astype(dt.dtype) * dt, carry[0], args)))
    records = jax.tree_util.tree_map(lambda *a: jnp.concatenate(a, axis=0), *parts)
    return records, carry[0]
