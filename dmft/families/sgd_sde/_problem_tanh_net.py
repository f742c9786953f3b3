"""Problem definition (shared by theory and twin): the teacher–student network of 2509.01349 (theory/sgd_sde.md
§6), in which only the middle matrix W is trained.

    x ~ N(0, I_3),  h⁰ = tanh(M x) ∈ R^{n_f},  s = tanh(W h⁰) ∈ R^{n_h},  y = Z s ∈ R^{n_h}

with M_ij ~ N(0, 1/3) and Z_ij ~ N(0, 1/n_h) fixed, the teacher's W_t ~ N(0, 1/n_f), the student's W(0) ~ N(0,
σ_W²/n_f), and the loss ½ mean_batch |y_t − y|². The readout's output dimension is not stated in the note; we
take it square (n_out = n_h), so that the couplings J = ZᵀZ act on the n_h soft spins.

Per-sample descent direction (the negative gradient of ½|y_t − y|²):

    φ_n = (Zᵀ(y_t,n − y_n)) ⊙ (1 − s_n²),    g_n = φ_n h⁰_nᵀ      (n_h × n_f)
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import jax.numpy as jnp
from jaxtyping import Array, Float

__all__ = [
    "INPUT_DIM",
    "TanhData",
    "make_data",
    "data_size",
    "forward",
    "loss",
    "descent_direction",
    "per_sample_descent",
    "sample_gradient_variance",
]

INPUT_DIM = 3


class TanhData(NamedTuple):
    """Fixed features h⁰ and teacher outputs y_t of a data set, plus the readout Z that produced them."""

    h0: Float[Array, "p nf"]
    y: Float[Array, "p nout"]
    z: Float[Array, "nout nh"]


def make_data(
    noise: Float[Array, " k"], n_h: int, n_f: int, p: int, p_test: int
) -> tuple[TanhData, TanhData, Float[Array, "nh nf"]]:
    """M, Z, the teacher W_t and the train/test sets from standard normals ``noise`` (length
    :func:`data_size`; one draw, cheap to compile). Returns ``(train, test, w_teacher)``."""
    sizes = (n_f * INPUT_DIM, n_h * n_h, n_h * n_f, p * INPUT_DIM, p_test * INPUT_DIM)
    parts = jnp.split(noise, list(itertools.accumulate(sizes))[:-1])
    m = parts[0].reshape(n_f, INPUT_DIM) / jnp.sqrt(INPUT_DIM)
    z = parts[1].reshape(n_h, n_h) / jnp.sqrt(n_h)
    w_t = parts[2].reshape(n_h, n_f) / jnp.sqrt(n_f)

    def dataset(x: Array) -> TanhData:
        h0 = jnp.tanh(x.reshape(-1, INPUT_DIM) @ m.T)
        return TanhData(h0, jnp.tanh(h0 @ w_t.T) @ z.T, z)

    return dataset(parts[3]), dataset(parts[4]), w_t


def data_size(n_h: int, n_f: int, p: int, p_test: int) -> int:
    """Number of standard normals :func:`make_data` consumes."""
    return n_f * INPUT_DIM + n_h * n_h + n_h * n_f + (p + p_test) * INPUT_DIM


def forward(
    w: Float[Array, "nh nf"], h0: Float[Array, "p nf"], z: Float[Array, "nout nh"]
) -> tuple[Array, Array]:
    """Hidden spins s = tanh(W h⁰) and outputs y = Z s, row-wise over samples."""
    s = jnp.tanh(h0 @ w.T)
    return s, s @ z.T


def loss(w: Float[Array, "nh nf"], data: TanhData) -> Float[Array, ""]:
    """½ mean_n |y_t,n − Z tanh(W h⁰_n)|²."""
    _, y = forward(w, data.h0, data.z)
    return 0.5 * jnp.mean(jnp.sum((data.y - y) ** 2, axis=-1))


def _phi(w: Float[Array, "nh nf"], data: TanhData) -> Float[Array, "p nh"]:
    s, y = forward(w, data.h0, data.z)
    return ((data.y - y) @ data.z) * (1.0 - s**2)


def descent_direction(w: Float[Array, "nh nf"], data: TanhData) -> Float[Array, "nh nf"]:
    """Mean descent direction ḡ = mean_n φ_n h⁰_nᵀ = −∇L(W)."""
    return _phi(w, data).T @ data.h0 / data.h0.shape[0]


def per_sample_descent(w: Float[Array, "nh nf"], data: TanhData) -> Float[Array, "p nh nf"]:
    """All g_n = φ_n h⁰_nᵀ (memory p·n_h·n_f: use on test-sized sets)."""
    return _phi(w, data)[:, :, None] * data.h0[:, None, :]


def sample_gradient_variance(w: Float[Array, "nh nf"], data: TanhData) -> Float[Array, ""]:
    """Per-entry variance of the per-sample gradient over the data set, averaged over entries:

        σ²(W) = ( mean_n |φ_n|² |h⁰_n|² − |ḡ|_F² ) / (n_h n_f)

    (|φ hᵀ|_F² = |φ|²|h|², so no per-sample matrix is formed).
    """
    phi = _phi(w, data)
    g = phi.T @ data.h0 / data.h0.shape[0]
    second = jnp.mean(jnp.sum(phi**2, axis=1) * jnp.sum(data.h0**2, axis=1))
    return (second - jnp.sum(g**2)) / g.size
