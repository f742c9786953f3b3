r"""Level 2 for deep linear networks: the six spike Gram matrices of every weight matrix (spectra.md §6a, §6b).

Each trained matrix is its initial Gaussian matrix plus spikes G C Φᵀ built from products with that initial
matrix. The outlier singular values follow from six Gram matrices, all T×T averages supplied by the level-1
solution (:func:`dmft.families.deep_linear.solve`); by causality their leading [0, t)² block is the Gram of the
matrix after t steps.

Hidden matrix M^ℓ (1 ≤ ℓ ≤ L−1, square, edge 2σ): left space k = ℓ+1, right space ℓ, C = ηγ0 I,

    GᵀG = C_g^{k},  ΦᵀΦ = C_e^ℓ,
    GᵀY = 𝕄_k[σ²Q_kC_in^k(I + A_ℓ𝕄_kQ_k)ᵀ + Σ_r^k(A_ℓ𝕄_k)ᵀ],
    YᵀY = σ²(I + A_ℓ𝕄_kQ_k)C_in^k(I + A_ℓ𝕄_kQ_k)ᵀ + (A_ℓ𝕄_k)Σ_r^k(A_ℓ𝕄_k)ᵀ,
    ZᵀZ = (I + B_k𝔽_ℓP_ℓ)Σ_r^ℓ(I + B_k𝔽_ℓP_ℓ)ᵀ + σ²B_k𝔽_ℓC_in^ℓ𝔽_ℓᵀB_kᵀ,
    ΦᵀZ = 𝔽_ℓ[σ²C_in^ℓ𝔽_ℓᵀB_kᵀ + P_ℓΣ_r^ℓ(I + B_k𝔽_ℓP_ℓ)ᵀ].

First matrix M⁰ (N×D, q = ν, edge σ(1 + √ν)), Grams divided by D, C = ηγ0 I: the left space is N-space 1
(formulas above with k = 1 and A_0), multiplied by ν; the right space is the D-space, with E = B_1HJ/(γ0ν):

    ΦᵀΦ = C_q,
    ZᵀZ = (I − E)νσ²C_g^1(I − E)ᵀ + B_1J′C_ΔJ′ᵀB_1ᵀ/α + ρ*(B_1HJ𝟙)(B_1HJ𝟙)ᵀ,
    ΦᵀZ = −(HJ/(γ0ν))νσ²C_g^1(I − E)ᵀ + J′C_ΔJ′ᵀB_1ᵀ/α + ρ*(HJ𝟙)(B_1HJ𝟙)ᵀ.

The identity ΦᵀZ = (GᵀY)ᵀ equates a right-space with a left-space average; it exercises every response and is
returned as a diagnostic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ...results import record_steps
from ...spectra.outliers import Grams, Outliers, outliers_over_time
from .theory import DeepLinearParams, DeepLinearSolution

__all__ = [
    "layer_grams",
    "bulk_edge",
    "aspect_ratio",
    "layer_outliers",
    "consistency_residual",
    "level2_steps",
]


def bulk_edge(p: DeepLinearParams, layer: int) -> Float[Array, ""]:
    """Largest bulk singular value: σ(1 + √ν) for M⁰, 2σ for hidden matrices."""
    return p.sigma * (1 + jnp.sqrt(p.width_ratio)) if layer == 0 else 2 * p.sigma


def aspect_ratio(p: DeepLinearParams, layer: int) -> Float[Array, ""]:
    return p.width_ratio if layer == 0 else jnp.asarray(1.0)


def _left(sol: DeepLinearSolution, p: DeepLinearParams, k: int, depth: int) -> tuple[Array, Array, Array]:
    """⟨g^kg^kᵀ⟩, ⟨g^kχ^kᵀ⟩, ⟨χ^kχ^kᵀ⟩ in N-space k, with χ^k = u^k + A_{k−1}g^k."""
    T = sol.R.shape[0]
    eye = jnp.eye(T)
    sig2 = p.sigma**2
    M, Q, A = sol.M[k], sol.Q[k], sol.A[k - 1]
    c_in = sol.C_q if k == 1 else sol.C_e[k - 1]
    sigma_r = p.sigma_readout**2 * jnp.ones((T, T)) if k == depth else sig2 * sol.C_g[k + 1]
    am = A @ M
    lin = eye + am @ Q
    gy = M @ (sig2 * Q @ c_in @ lin.T + sigma_r @ am.T)
    yy = sig2 * lin @ c_in @ lin.T + am @ sigma_r @ am.T
    return sol.C_g[k], gy, yy


def layer_grams(sol: DeepLinearSolution, p: DeepLinearParams, layer: int, depth: int) -> tuple[Grams, Array]:
    """The six Grams of weight matrix ``layer`` (0 = first, 1..L−1 hidden) from a level-1 solution, and C."""
    T = sol.R.shape[0]
    eye = jnp.eye(T)
    sig2 = p.sigma**2
    strength = p.lr * p.gamma0
    if layer >= 1:
        k = layer + 1
        GG, GY, YY = _left(sol, p, k, depth)
        F, P, B = sol.F[layer], sol.P[layer], sol.B[k]
        c_in = sol.C_q if layer == 1 else sol.C_e[layer - 1]
        sigma_r = sig2 * sol.C_g[layer + 1]
        bfp = eye + B @ F @ P
        bf = B @ F
        ZZ = bfp @ sigma_r @ bfp.T + sig2 * bf @ c_in @ bf.T
        PZ = F @ (sig2 * c_in @ F.T @ B.T + P @ sigma_r @ bfp.T)
        return Grams(GG, GY, YY, sol.C_e[layer], PZ, ZZ), strength * eye
    nu = p.width_ratio
    GG, GY, YY = _left(sol, p, 1, depth)
    H, J, P0, B1 = sol.H, sol.J, sol.P0, sol.B[1]
    HJ = H @ J
    Jp = eye - HJ @ P0
    ones = jnp.ones(T)
    E = B1 @ HJ / (p.gamma0 * nu)
    cg1 = sol.C_g[1]
    b_hj1 = B1 @ (HJ @ ones)
    hj1 = HJ @ ones
    alpha = p.alpha
    ZZ = (
        (eye - E) @ (nu * sig2 * cg1) @ (eye - E).T
        + B1 @ Jp @ sol.C_delta @ Jp.T @ B1.T / alpha
        + p.teacher_variance * jnp.outer(b_hj1, b_hj1)
    )
    PZ = (
        -(HJ / (p.gamma0 * nu)) @ (nu * sig2 * cg1) @ (eye - E).T
        + Jp @ sol.C_delta @ Jp.T @ B1.T / alpha
        + p.teacher_variance * jnp.outer(hj1, b_hj1)
    )
    return Grams(nu * GG, nu * GY, nu * YY, sol.C_q, PZ, ZZ), strength * eye


def level2_steps(steps: int, every: int | None = None, extra: Sequence[int] = ()) -> np.ndarray:
    """Steps at which level 2 is evaluated (:func:`dmft.results.record_steps`): 0, k, 2k, …, the last step T − 1
    and ``extra`` (the twin's spectrum steps; sorted, unique).

    Default k: 1 up to T = 64, else ⌈T/64⌉ (about 64 evaluations; the cost of one grows as t³, see
    :func:`layer_outliers`).
    """
    return record_steps(steps, every or max(1, math.ceil(steps / 64)), extra=extra)


def _block_size(t: int, steps: int) -> int:
    """Leading block that holds the spikes s < t: t rounded up to a multiple of 32 (at least 32), capped at T."""
    return min(steps, 32 * max(1, -(-t // 32)))


def layer_outliers(
    sol: DeepLinearSolution,
    p: DeepLinearParams,
    layer: int,
    depth: int,
    k_max: int = 4,
    steps: Sequence[int] | None = None,
) -> Outliers:
    """Outlier singular values of weight matrix ``layer`` after t steps, for each t in ``steps`` (default: all).

    The state after t steps involves only the [0, t)² blocks of the Grams, so the steps are grouped by the
    block (a multiple of 32) that holds them and each group is solved on that block, on the rank-reduced problem
    of :func:`dmft.spectra.outliers.outliers_over_time` (one compile per block size).
    """
    grams, c = layer_grams(sol, p, layer, depth)
    T = c.shape[-1]
    steps = np.arange(T) if steps is None else np.asarray(steps, dtype=int)
    sizes = np.array([_block_size(int(t), T) for t in steps])
    parts, order = [], []
    for b in np.unique(sizes):
        pick = np.flatnonzero(sizes == b)
        block = Grams(*(g[:b, :b] for g in grams))
        parts.append(outliers_over_time(block, c[:b, :b], aspect_ratio(p, layer), p.sigma, steps[pick], k_max=k_max))
        order.append(pick)
    inverse = np.argsort(np.concatenate(order))
    return jax.tree.map(lambda *xs: jnp.concatenate(xs)[inverse], *parts)


def consistency_residual(g: Grams) -> Float[Array, ""]:
    """max |ΦᵀZ − (GᵀY)ᵀ| / max |GᵀY| (spectra.md §5): zero for an exact level-1 solution."""
    return jnp.max(jnp.abs(g.PhitZ - g.GtY.T)) / (jnp.max(jnp.abs(g.GtY)) + 1e-300)
