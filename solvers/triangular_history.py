"""A history of causal response rows, stored and contracted block-triangularly.

Forward-mode sensitivities of a causal system give, at each time r, a row X[r] ∈ R^{n×T} (n samples, T
directions) that vanishes in every direction s ≥ r. A memory term needs, at time t, the contraction

    M_t = Σ_{r ≤ t} h(r) X[r]      (h a weight row, zero beyond t)

Stored densely, X costs T²n and each contraction reads all of it (Tn·T per step, O(nT³) in all). Here time is
cut into blocks of b steps and only the blocks (k, j) with j ≤ k are kept ("row block" k, "direction block"
j), packed: half the memory, and the contraction at time t visits only blocks with j ≤ k ≤ t//b, so a whole
run reads about a
sixth of the dense traffic. Pure JAX, fixed shapes (dynamic trip counts inside), jit-able.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

__all__ = ["History", "history_init", "history_write", "history_contract"]


class History(NamedTuple):
    """Packed blocks: ``blocks[k(k+1)/2 + j]`` has shape (b, n, b): rows k·b.., directions j·b.."""

    blocks: Float[Array, "m b n b"]


def _base(k: Array) -> Array:
    return k * (k + 1) // 2


def history_init(n: int, T: int, b: int) -> History:
    """Empty history for n samples and T directions/times (T a multiple of b)."""
    if T % b:
        raise ValueError(f"history: T = {T} must be a multiple of the block size {b}")
    nb = T // b
    return History(jnp.zeros((nb * (nb + 1) // 2, b, n, b)))


def history_write(hist: History, row: Float[Array, "n T"], t: Int[Array, ""]) -> History:
    """Store X[t] = ``row`` (directions ≥ t must be zero: they are not stored past the diagonal block)."""
    _, b, n, _ = hist.blocks.shape
    k, r = t // b, t % b

    def body(j: Array, blocks: Array) -> Array:
        piece = jax.lax.dynamic_slice(row, (0, j * b), (n, b))
        return jax.lax.dynamic_update_slice(blocks, piece[None, None], (_base(k) + j, r, 0, 0))

    return History(jax.lax.fori_loop(0, k + 1, body, hist.blocks))


def history_contract(hist: History, h: Float[Array, " T"], t: Int[Array, ""]) -> Float[Array, "n T"]:
    """Σ_{r ≤ t} h(r) X[r] (rows after t are read as zero: h must vanish there or the rows be unwritten)."""
    _, b, n, _ = hist.blocks.shape
    T = h.shape[0]
    kt = t // b

    def one_direction_block(j: Array, out: Array) -> Array:
        def add_row_block(k: Array, acc: Array) -> Array:
            blk = jax.lax.dynamic_index_in_dim(hist.blocks, _base(k) + j, keepdims=False)
            hk = jax.lax.dynamic_slice(h, (k * b,), (b,))
            return acc + jnp.tensordot(hk, blk, axes=1)

        acc = jax.lax.fori_loop(j, kt + 1, add_row_block, jnp.zeros((n, b), dtype=out.dtype))
        return jax.lax.dynamic_update_slice(out, acc, (0, j * b))

    return jax.lax.fori_loop(0, kt + 1, one_direction_block, jnp.zeros((n, T), dtype=hist.blocks.dtype))
