r"""Level 2 of the mean-field family: outlier singular values of the hidden matrices M^ℓ = W^ℓ/√N (ℓ = 1..L−1).

Each hidden matrix is its initial Gaussian matrix (square, entries σ²/N, bulk edge 2σ) plus spikes
(spectra.md §6c): M^ℓ(t) = M^ℓ(0) + N⁻¹ Σ_{s<t,μ} (ηγ0Δ_μ(s)/P) g^{ℓ+1}_μ(s) φ(h^ℓ_μ(s))ᵀ.

**Linear φ (closed form).** g^{ℓ+1}_μ(s) = g^{ℓ+1}(s) for every μ, so the P spikes of one step add up to one,
M^ℓ(t) = M^ℓ(0) + N⁻¹ Σ_{s<t} ηγ0 g^{ℓ+1}(s) q^ℓ(s)ᵀ with q^ℓ(s) = P⁻¹Σ_μ Δ_μ(s) h^ℓ_μ(s): rank t after t
steps, C = ηγ0 I_t, exactly the same matrix as the (μ, s)-indexed form, with a T×T instead of a TP×TP basis.
With the reduced objects of :mod:`._linear` (k = ℓ+1; U = Δ·u sources, E = σ²D^ℓv^ℓ = Δ·A^ℓ,
X = I + D^ℓv^ℓβ^ℓ, Y′ = D^ℓv^ℓ, B̂ = σ²v^{ℓ+1}β^{ℓ+1}, Σ_r = σ²G^{ℓ+1}), all divided by N:

    GᵀG = G^{ℓ+1},                       ΦᵀΦ = Q^ℓ/P²
    GᵀY = P⁻¹[σ²v^kβ^kQ^ℓ + G^kEᵀ],       YᵀY = P⁻²[σ²Q^ℓ + E(σ²v^kβ^kQ^ℓ) + (·)ᵀ + EG^kEᵀ]
    ΦᵀZ = P⁻¹[Y′Σ_r(I + B̂Y′)ᵀ + Xσ²Q^{ℓ−1}XᵀB̂ᵀ],   ZᵀZ = (I + B̂Y′)Σ_r(I + B̂Y′)ᵀ + B̂Xσ²Q^{ℓ−1}XᵀB̂ᵀ

(Y = χ^{ℓ+1} and Z = ξ^ℓ, the bulk parts of h^{ℓ+1} and z^ℓ). The identity ΦᵀZ = (GᵀY)ᵀ equates averages of
two different layers and is returned as a check (spectra.md §5).

**Any φ.** :func:`hidden_layer_outliers` takes per-step Grams (closed form above, or Monte Carlo from
``_monte_carlo.monte_carlo_grams``) and solves the outlier equation with :mod:`dmft.spectra.outliers`.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int

from ...spectra.outliers import Grams, Outliers, mask_leading_block, outlier_singular_values
from ._linear import LinearState

__all__ = ["linear_grams", "hidden_layer_outliers", "linear_outliers"]


def linear_grams(
    st: LinearState, layer: int, *, depth: int, gamma0: ArrayLike, sigma: ArrayLike, lr: ArrayLike, n_train: int
) -> tuple[Grams, Float[Array, "T T"]]:
    """The six T×T Grams (÷N) of hidden matrix M^layer (1 ≤ layer ≤ L−1) and C = ηγ0 I (module docstring)."""
    if not 1 <= layer <= depth - 1:
        raise ValueError(f"layer = {layer}: hidden matrices are 1..{depth - 1}")
    T = st.delta.shape[0]
    eye = jnp.eye(T)
    s2 = sigma**2
    P = n_train
    ell = layer
    i, k = ell - 1, ell  # array index of layer ℓ and of layer k = ℓ+1
    # left space, k = ℓ + 1
    gk = st.G[k]
    gu = s2 * st.v[k] @ st.beta[k] @ st.Q[ell]  # ⟨g^k (Δ·u^k)ᵀ⟩
    e = s2 * st.D[i] @ st.v[i]  # Δ·A^ℓ
    gy = (gu + gk @ e.T) / P
    yy = (s2 * st.Q[ell] + e @ gu + gu.T @ e.T + e @ gk @ e.T) / P**2
    # right space ℓ
    sig_r = s2 * st.G[ell]  # Σ_r^ℓ = σ²G^{ℓ+1}
    bhat = s2 * st.v[k] @ st.beta[k]
    yp = st.D[i] @ st.v[i]
    x = eye + yp @ st.beta[i]
    iby = eye + bhat @ yp
    cq = s2 * st.Q[ell - 1]
    pz = (yp @ sig_r @ iby.T + x @ cq @ x.T @ bhat.T) / P
    zz = iby @ sig_r @ iby.T + bhat @ x @ cq @ x.T @ bhat.T
    return Grams(gk, gy, yy, st.Q[ell] / P**2, pz, zz), lr * gamma0 * eye


@partial(jax.jit, static_argnames=("k_max",))
def hidden_layer_outliers(
    grams: Grams, c: Float[ArrayLike, "n k k"], *, sigma: ArrayLike, k_max: int = 4, edge_tol: float = 1e-3,
    threshold: float = 1e-10,
) -> Outliers:
    """Outlier singular values of a square hidden matrix (edge 2σ) at n steps, from per-step Grams and C.

    ``grams`` fields and ``c`` carry a leading step axis (spikes of later steps zeroed, e.g. by
    :func:`dmft.spectra.outliers.mask_leading_block`); returns :class:`Outliers` with that leading axis.
    """
    fn = lambda g, cc: outlier_singular_values(  # noqa: E731
        g, cc, 1.0, sigma, k_max=k_max, edge_tol=edge_tol, threshold=threshold)
    return jax.lax.map(lambda a: fn(*a), (grams, jnp.asarray(c, dtype=float)))


@partial(jax.jit, static_argnames=("layer", "depth", "n_train", "k_max"))
def linear_outliers(
    st: LinearState, layer: int, steps: Int[ArrayLike, " n"], *, depth: int, gamma0: ArrayLike, sigma: ArrayLike,
    lr: ArrayLike, n_train: int, k_max: int = 4,
) -> Outliers:
    """Outliers of M^layer after t steps for each t in ``steps`` (closed-form Grams, leading [0, t)² blocks).

    Compiled once per (T, number of steps, layer, depth, P, k_max); the hyper-parameters are traced."""
    grams, c = linear_grams(st, layer, depth=depth, gamma0=gamma0, sigma=sigma, lr=lr, n_train=n_train)
    steps = jnp.asarray(steps, dtype=int)
    per = jax.vmap(lambda t: mask_leading_block(grams, c, t))(steps)
    return hidden_layer_outliers(per[0], per[1], sigma=sigma, k_max=k_max)
