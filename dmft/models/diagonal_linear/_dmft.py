"""DMFT of the diagonal linear network in the proportional limit (diagonal_linear.md §3–5), by Monte Carlo.

Sample site (closed form) and coordinate site (sampled), on the discrete time grid t = 0..T−1:

    H = (I + R)⁻¹,   C_Δ = H(σ_ε²𝟙𝟙ᵀ + C_β̃)Hᵀ,   ρ ~ GP(0, αC_Δ),   β* ~ prior
    q̂(t) = ρ(t)/α − Σ_{s≤t} H(t,s) β̃(s),   (u, v) ← GD step with q̂(t),   β̃ = β − β*
    C_β̃(t,s) = E β̃(t)β̃(s),   R(t,s) = E ∂β(t)/∂ρ(s)  (s < t, H held fixed)
    test(t) = ½(C_β̃(t,t) + σ_ε²),   train(t) = ½ C_Δ(t,t)

The expectation over the coordinate site is an average over S samples (β*_i, Z_i), Z_i ∈ R^T standard normal, drawn
once (common random numbers): ρ_i = 𝐋Z_i with 𝐋𝐋ᵀ = αC_Δ. Two solvers of the same finite-S equations:

* :func:`causal_solve` (scheme B): one pass over t. Row t of C_β̃ and R needs the samples up to time t only, then
  row t of H, of C_Δ and of 𝐋 follow, then ρ(t), q̂(t) and the step. Exact for the sampled system.
* :func:`picard_solve` (scheme A): damped iteration of the whole-horizon map (C_β̃, R) → (C_β̃, R), with residual
  history; converges to the same fixed point as the causal pass (same Z).

Responses: ``"jvp"`` carries the exact tangents ∂(u, v)(t)/∂ρ(s) (forward mode through the step *and* the memory
term, vmapped over the direction s), cost O(S T³); ``"stein"`` uses Gaussian integration by parts,
R = E[β̃Zᵀ]𝐋⁻¹ (= E[β̃ρᵀ](αC_Δ)⁺), cost O(S T²), noisier and blind to degenerate directions of ρ.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular
from jaxtyping import Array, Bool, Float, Int

import dmft._jax  # noqa: F401  (float64 on)
from solvers.causal_cholesky import causal_cholesky, extend_cholesky, masked_upper_solve
from solvers.damped_fixed_point import damped_fixed_point

from ._model import Params, State, beta_of, init_state, step

__all__ = ["Solution", "causal_solve", "picard_solve", "RESPONSES"]

RESPONSES = ("jvp", "stein")


class Solution(NamedTuple):
    """Order parameters of one solve. ``beta`` holds the sampled paths β_i(t), shape (T, S)."""

    C: Float[Array, "t t"]  # C_β̃
    R: Float[Array, "t t"]  # response of β to ρ, strictly lower
    H: Float[Array, "t t"]  # (I + R)⁻¹
    CD: Float[Array, "t t"]  # C_Δ
    L: Float[Array, "t t"]  # causal Cholesky factor of αC_Δ
    active: Bool[Array, " t"]  # rows of 𝐋 with a nonzero pivot
    beta: Float[Array, "t s"]
    residual: Float[Array, ""]  # max|F(x) − x| of the self-consistency map at the solution
    iterations: Int[Array, ""]
    history: Float[Array, " n"]  # residual per Picard iteration (one entry for the causal pass)


# ----------------------------------------------------------------------------------------------------------------
# Sample site
# ----------------------------------------------------------------------------------------------------------------


def transfer(R: Float[Array, "t t"]) -> Float[Array, "t t"]:
    """H = (I + R)⁻¹ (R strictly lower, so I + R is unit lower triangular)."""
    eye = jnp.eye(R.shape[0], dtype=R.dtype)
    return solve_triangular(eye + R, eye, lower=True, unit_diagonal=True)


def residual_covariance(H: Float[Array, "t t"], C: Float[Array, "t t"], noise: Array) -> Float[Array, "t t"]:
    """C_Δ = H(σ_ε²𝟙𝟙ᵀ + C_β̃)Hᵀ, the covariance of the training residual Δ = H(ε𝟙 − ζ)."""
    return H @ (noise**2 + C) @ H.T


def stein_row(
    L: Float[Array, "t t"], active: Bool[Array, " t"], g: Float[Array, " t"], t: Array
) -> Float[Array, " t"]:
    """R(t, s<t) = Σ_r E[β̃(t)Z(r)] 𝐋⁻¹(r, s): solve 𝐋ᵀx = g on the active directions before t."""
    idx = jnp.arange(L.shape[0])
    before = idx < t
    return masked_upper_solve(L, jnp.where(before, g, 0.0), active & before)


# ----------------------------------------------------------------------------------------------------------------
# Scheme B: causal forward construction
# ----------------------------------------------------------------------------------------------------------------


def _tangent_map(f, primal: tuple, tangent: tuple):  # noqa: ANN001, ANN202
    """Push tangents with a trailing direction axis through f (a jvp vmapped over directions)."""
    return jax.vmap(lambda *d: jax.jvp(f, primal, d)[1], in_axes=-1, out_axes=-1)(*tangent)


def causal_solve(
    p: Params,
    beta_star: Float[Array, " s"],
    z: Float[Array, "t s"],
    *,
    form: str,
    response: str = "jvp",
) -> Solution:
    """Scheme B (diagonal_linear.md §5): one pass over t, exact for the sampled system.

    Per step t: β(t) and its tangents from the samples; row t of C_β̃ and R; row t of H = (I + R)⁻¹ by forward
    substitution, H(t,:) = e_t − R(t,:)H; row t of C_Δ; row t of 𝐋 (:func:`extend_cholesky`); ρ(t) = 𝐋(t,:)Z;
    q̂(t); the GD step of the samples and of their tangents.
    """
    T, S = z.shape
    alpha, noise = jnp.asarray(p.alpha), jnp.asarray(p.noise)
    idx = jnp.arange(T)
    jvp = response == "jvp"
    beta_fn = lambda w: beta_of(w, form)
    step_fn = lambda w, q: step(w, q, p, form)

    w0 = init_state(p, (S,), form)
    zeros = jnp.zeros((T, T))
    carry0 = {
        "w": w0,
        "bt": jnp.zeros((T, S)),
        "C": zeros, "R": zeros, "H": zeros, "CD": zeros, "L": zeros,
        "active": jnp.zeros(T, dtype=bool),
        "scale": jnp.zeros(()),
    }
    if jvp:
        carry0["dw"] = tuple(jnp.zeros((S, T)) for _ in w0)
        carry0["X"] = jnp.zeros((T, S, T))  # X[r, i, s] = ∂β_i(r)/∂ρ(s)

    def body(c: dict, t: Array) -> tuple[dict, None]:
        c = dict(c)
        w = c["w"]
        btil = beta_fn(w) - beta_star
        bt = c["bt"].at[t].set(btil)
        c_row = bt @ btil / S
        c["C"] = c["C"].at[t].set(c_row).at[:, t].set(c_row)
        if jvp:
            dbeta = _tangent_map(beta_fn, (w,), (c["dw"],))  # (S, T)
            c["X"] = c["X"].at[t].set(dbeta)
            r_row = jnp.where(idx < t, jnp.mean(dbeta, axis=0), 0.0)
        else:
            r_row = stein_row(c["L"], c["active"], z @ btil / S, t)
        c["R"] = c["R"].at[t].set(r_row)
        h = jnp.where(idx == t, 1.0, 0.0) - r_row @ c["H"]
        H = c["H"].at[t].set(h)
        cd_row = (h @ (noise**2 + c["C"])) @ H.T
        c["CD"] = c["CD"].at[t].set(cd_row).at[:, t].set(cd_row)
        c["scale"] = jnp.maximum(c["scale"], alpha * cd_row[t])
        c["L"], c["active"] = extend_cholesky(c["L"], c["active"], alpha * cd_row, t, c["scale"])
        rho = c["L"][t] @ z
        qhat = rho / alpha - h @ bt
        c["w"] = step_fn(w, qhat)
        if jvp:
            dq = jnp.where(idx == t, 1.0 / alpha, 0.0)[None, :] - jnp.tensordot(h, c["X"], axes=1)
            c["dw"] = _tangent_map(step_fn, (w, qhat), (c["dw"], dq))
        c["H"], c["bt"] = H, bt
        return c, None

    c, _ = jax.lax.scan(body, carry0, idx)
    # Self-consistency check: re-run the samples with the final H and 𝐋 and compare C_β̃ (and R for Stein).
    fC, fR = _picard_map_parts(p, beta_star, z, c["H"], c["L"], c["active"], form, None if jvp else "stein")
    res = jnp.max(jnp.abs(fC - c["C"]))
    if fR is not None:
        res = jnp.maximum(res, jnp.max(jnp.abs(fR - c["R"])))
    return Solution(
        c["C"], c["R"], c["H"], c["CD"], c["L"], c["active"], c["bt"] + beta_star[None, :],
        res, jnp.asarray(1), res[None],
    )


# ----------------------------------------------------------------------------------------------------------------
# Scheme A: damped Picard iteration of the whole-horizon map
# ----------------------------------------------------------------------------------------------------------------


def _paths(
    p: Params, beta_star: Array, rho: Float[Array, "t ..."], H: Float[Array, "t t"], form: str
) -> Float[Array, "t ..."]:
    """β̃(t) of samples driven by a given ρ path with the memory kernel H held fixed (any trailing sample shape)."""
    T = rho.shape[0]
    w0: State = init_state(p, beta_star.shape, form)

    def body(carry: tuple[State, Array], t: Array) -> tuple[tuple[State, Array], None]:
        w, bt = carry
        bt = bt.at[t].set(beta_of(w, form) - beta_star)
        qhat = rho[t] / p.alpha - jnp.tensordot(H[t], bt, axes=1)
        return (step(w, qhat, p, form), bt), None

    (_, bt), _ = jax.lax.scan(body, (w0, jnp.zeros_like(rho)), jnp.arange(T))
    return bt


def _mean_jacobian(
    p: Params, beta_star: Array, rho: Float[Array, "t s"], H: Float[Array, "t t"], form: str, chunk: int
) -> Float[Array, "t t"]:
    """R(t,s) = mean_i ∂β_i(t)/∂ρ_i(s) by forward-mode tangents through the scanned path, in sample chunks."""
    T, S = rho.shape
    n_chunks = -(-S // chunk)
    pad = n_chunks * chunk - S
    rho_p = jnp.pad(rho, ((0, 0), (0, pad))).T.reshape(n_chunks, chunk, T)
    bs_p = jnp.pad(beta_star, (0, pad)).reshape(n_chunks, chunk)
    wt = (jnp.arange(n_chunks * chunk) < S).astype(rho.dtype).reshape(n_chunks, chunk)
    jac_one = jax.jacfwd(lambda r, b: _paths(p, b, r, H, form), argnums=0)

    def one_chunk(args: tuple[Array, Array, Array]) -> Array:
        r, b, m = args
        return jnp.tensordot(m, jax.vmap(jac_one)(r, b), axes=1)

    return jnp.sum(jax.lax.map(one_chunk, (rho_p, bs_p, wt)), axis=0) / S


def _picard_map_parts(
    p: Params, beta_star: Array, z: Array, H: Array, L: Array, active: Array, form: str, response: str | None,
    chunk: int = 64,
) -> tuple[Array, Array | None]:
    """New (C_β̃, R) from samples driven by ρ = 𝐋Z with H fixed (R is None when ``response`` is None)."""
    T, S = z.shape
    rho = L @ z
    bt = _paths(p, beta_star, rho, H, form)
    C = bt @ bt.T / S
    if response is None:
        return C, None
    if response == "stein":
        G = bt @ z.T / S  # G[t, r] = E β̃(t)Z(r)
        R = jax.vmap(lambda g, t: stein_row(L, active, g, t))(G, jnp.arange(T))
    else:
        R = jnp.tril(_mean_jacobian(p, beta_star, rho, H, form, chunk), k=-1)
    return C, R


def _closure(p: Params, C: Array, R: Array) -> tuple[Array, Array, Array, Array]:
    H = transfer(R)
    CD = residual_covariance(H, C, jnp.asarray(p.noise))
    L, active = causal_cholesky(p.alpha * CD)
    return H, CD, L, active


def picard_solve(
    p: Params,
    beta_star: Float[Array, " s"],
    z: Float[Array, "t s"],
    *,
    form: str,
    response: str = "jvp",
    damping: float | Array = 0.5,
    tol: float | Array = 1e-8,
    max_iter: int = 200,
    chunk: int = 64,
) -> Solution:
    """Scheme A (diagonal_linear.md §5): x ← (1 − θ)x + θF(x) on x = (C_β̃, R), from C_β̃ = ρ*𝟙𝟙ᵀ, R = 0.

    F: H = (I + R)⁻¹, C_Δ = H(σ_ε² + C_β̃)Hᵀ, 𝐋 = chol(αC_Δ), ρ = 𝐋Z, run the samples, return their C_β̃ and R.
    Stops when max|F(x) − x| < ``tol``. ``chunk`` samples at a time carry jvp tangents (memory chunk·T²).
    """
    T, S = z.shape

    def F(x: tuple[Array, Array]) -> tuple[Array, Array]:
        H, _, L, active = _closure(p, *x)
        return _picard_map_parts(p, beta_star, z, H, L, active, form, response, chunk)

    x0 = (jnp.full((T, T), p.teacher_variance, dtype=z.dtype), jnp.zeros((T, T), dtype=z.dtype))
    fp = damped_fixed_point(F, x0, damping=damping, tol=tol, max_iter=max_iter)
    C, R = fp.x
    H, CD, L, active = _closure(p, C, R)
    bt = _paths(p, beta_star, L @ z, H, form)
    return Solution(C, R, H, CD, L, active, bt + beta_star[None, :], fp.residual, fp.iterations, fp.history)
