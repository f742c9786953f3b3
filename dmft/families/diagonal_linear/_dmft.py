"""DMFT of the diagonal linear network in the proportional limit (diagonal_linear.md §3–5), by Monte Carlo.

Sample site (closed form) and coordinate site (sampled), on the discrete time grid t = 0..T−1:

    H = (I + R)⁻¹,   C_Δ = H(σ_ε²𝟙𝟙ᵀ + C_β̃)Hᵀ,   ρ ~ GP(0, αC_Δ),   β* ~ prior
    q̂(t) = ρ(t)/α − Σ_{s≤t} H(t,s) β̃(s),   (u, v) ← GD step with q̂(t),   β̃ = β − β*
    C_β̃(t,s) = E β̃(t)β̃(s),   R(t,s) = E ∂β(t)/∂ρ(s)  (s < t, H held fixed)
    test(t) = ½(C_β̃(t,t) + σ_ε²),   train(t) = ½ C_Δ(t,t)

The expectation over the coordinate site is an average over S samples (β*_i, Z_i), Z_i ∈ R^T standard normal,
drawn once (common random numbers): ρ_i = 𝐋Z_i with 𝐋𝐋ᵀ = αC_Δ. Since C_β̃ = B̃B̃ᵀ/S for the sample paths B̃
(T×S), αC_Δ = GGᵀ with the data matrix G = √α H[σ_ε𝟙, B̃/√S], and 𝐋 is the causal LQ factor of G
(:mod:`solvers.causal_lq`), stable although C_Δ of a smooth process is numerically of low rank. Two solvers of
the same finite-S equations:

* :func:`causal_solve` (scheme B): one pass over t. Row t of C_β̃ and R needs the samples up to time t
  only, then row t of H, of C_Δ and of 𝐋 follow, then ρ(t), q̂(t) and the step. Exact for the sampled system.
* :func:`picard_solve` (scheme A): damped iteration of the whole-horizon map on (sample paths, R), with
  residual history; converges to the same fixed point as the causal pass (same Z).

Responses: ``"jvp"`` carries the exact tangents ∂(u, v)(t)/∂ρ(s) (forward mode through the step *and* the
memory term, vmapped over the direction s), cost O(S T³); ``"stein"`` uses Gaussian integration by parts,
R = E[β̃Zᵀ]𝐋⁻¹ (= E[β̃ρᵀ](αC_Δ)⁺), cost O(S T²), noisier and blind to degenerate directions of ρ.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular
from jaxtyping import Array, Bool, Float, Int

from solvers.causal_lq import causal_lq, extend_lq, masked_upper_solve
from solvers.damped_fixed_point import damped_fixed_point
from solvers.triangular_history import history_contract, history_init, history_write

from ..._jax import require_x64
from ._model import Params, State, beta_of, init_state, step

__all__ = ["Solution", "causal_solve", "picard_solve"]


class Solution(NamedTuple):
    """Order parameters of one solve. ``beta`` holds the sampled paths β_i(t), shape (T, S)."""

    C: Float[Array, "t t"]  # C_β̃
    R: Float[Array, "t t"]  # response of β to ρ, strictly lower
    H: Float[Array, "t t"]  # (I + R)⁻¹
    CD: Float[Array, "t t"]  # C_Δ
    L: Float[Array, "t t"]  # causal factor of αC_Δ = 𝐋𝐋ᵀ
    active: Bool[Array, " t"]  # rows of 𝐋 with a nonzero pivot
    beta: Float[Array, "t s"]
    residual: Float[Array, ""]  # max|F(x) − x| of the self-consistency map at the solution
    iterations: Int[Array, ""]
    history: Float[Array, " n"]  # residual per Picard iteration (one entry for the causal pass)


# ------------------------------------------------------------------------------------------------------------
# Sample site
# ------------------------------------------------------------------------------------------------------------


def transfer(R: Float[Array, "t t"]) -> Float[Array, "t t"]:
    """H = (I + R)⁻¹ (R strictly lower, so I + R is unit lower triangular)."""
    eye = jnp.eye(R.shape[0], dtype=R.dtype)
    return solve_triangular(eye + R, eye, lower=True, unit_diagonal=True)


def residual_covariance(H: Float[Array, "t t"], C: Float[Array, "t t"], noise: Array) -> Float[Array, "t t"]:
    """C_Δ = H(σ_ε²𝟙𝟙ᵀ + C_β̃)Hᵀ, the covariance of the training residual Δ = H(ε𝟙 − ζ)."""
    return H @ (noise**2 + C) @ H.T


def noise_data_row(h: Float[Array, " t"], hb: Float[Array, " s"], alpha: Array, noise: Array) -> Array:
    """Row t of G = √α H[σ_ε𝟙, B̃/√S] from h = H(t,:) and hb = H(t,:)B̃: GGᵀ = αC_Δ."""
    S = hb.shape[0]
    return jnp.sqrt(alpha) * jnp.concatenate([(noise * jnp.sum(h))[None], hb / jnp.sqrt(S)])


STEIN_CUT = 1e-4


def stein_row(
    L: Float[Array, "t t"], active: Bool[Array, " t"], g: Float[Array, " t"], t: Array, cut: float = STEIN_CUT
) -> Float[Array, " t"]:
    """R(t, s<t) = Σ_r E[β̃(t)Z(r)] 𝐋⁻¹(r, s): solve 𝐋ᵀx = g on the directions before t.

    Directions whose pivot 𝐋(r,r)² is below ``cut`` times the largest are dropped (their response is not
    identifiable from S samples: the Monte Carlo error of g(r) would be divided by the pivot).
    """
    idx = jnp.arange(L.shape[0])
    before = idx < t
    piv = jnp.diagonal(L) ** 2
    strong = piv > cut * jnp.max(jnp.where(before, piv, 0.0))
    return masked_upper_solve(L, jnp.where(before, g, 0.0), active & before & strong)


# ------------------------------------------------------------------------------------------------------------
# Scheme B: causal forward construction
# ------------------------------------------------------------------------------------------------------------


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
    substitution, H(t,:) = e_t − R(t,:)H; row t of C_Δ; row t of G and of 𝐋 (:func:`extend_lq`); ρ(t) =
    𝐋(t,:)Z; q̂(t); the GD step of the samples and of their tangents.
    """
    require_x64("causal_solve")
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
        "C": zeros,
        "R": zeros,
        "H": zeros,
        "CD": zeros,
        "L": zeros,
        "Q": jnp.zeros((T, S + 1)),
        "active": jnp.zeros(T, dtype=bool),
    }
    if jvp:  # tangents ∂(u, v)_i/∂ρ(s) and the history X[r] = ∂β_i(r)/∂ρ(s), directions padded to Tp
        b = -(-T // 12)
        Tp = b * (-(-T // b))
        carry0["dw"] = tuple(jnp.zeros((S, Tp)) for _ in w0)
        carry0["X"] = history_init(S, Tp, b)

    def body(c: dict, t: Array) -> tuple[dict, None]:
        c = dict(c)
        w = c["w"]
        btil = beta_fn(w) - beta_star
        bt = c["bt"].at[t].set(btil)
        c_row = bt @ btil / S
        c["C"] = c["C"].at[t].set(c_row).at[:, t].set(c_row)
        if jvp:
            dbeta = _tangent_map(beta_fn, (w,), (c["dw"],))  # (S, Tp)
            c["X"] = history_write(c["X"], dbeta, t)
            r_row = jnp.where(idx < t, jnp.mean(dbeta, axis=0)[:T], 0.0)
        else:
            r_row = stein_row(c["L"], c["active"], z @ btil / S, t)
        c["R"] = c["R"].at[t].set(r_row)
        h = jnp.where(idx == t, 1.0, 0.0) - r_row @ c["H"]
        H = c["H"].at[t].set(h)
        cd_row = (h @ (noise**2 + c["C"])) @ H.T
        c["CD"] = c["CD"].at[t].set(cd_row).at[:, t].set(cd_row)
        hb = h @ bt
        l_row, c["Q"], ok = extend_lq(c["Q"], noise_data_row(h, hb, alpha, noise), t)
        c["L"], c["active"] = c["L"].at[t].set(l_row), c["active"].at[t].set(ok)
        qhat = l_row @ z / alpha - hb
        c["w"] = step_fn(w, qhat)
        if jvp:
            h_p = jnp.pad(h, (0, Tp - T))
            kick = jnp.where(jnp.arange(Tp) == t, 1.0 / alpha, 0.0)  # ∂q̂(t)/∂ρ(s) = δ_ts/α
            dq = kick[None, :] - history_contract(c["X"], h_p, t)
            c["dw"] = _tangent_map(step_fn, (w, qhat), (c["dw"], dq))
        c["H"], c["bt"] = H, bt
        return c, None

    c, _ = jax.lax.scan(body, carry0, idx)
    # Self-consistency check: re-run the samples with the final H and 𝐋 and compare the paths (and R for
    # Stein).
    fB, fR = _picard_map_parts(p, beta_star, z, c["H"], c["L"], c["active"], form, None if jvp else "stein")
    res = jnp.max(jnp.abs(fB - c["bt"]))
    if fR is not None:
        res = jnp.maximum(res, jnp.max(jnp.abs(fR - c["R"])))
    return Solution(
        c["C"],
        c["R"],
        c["H"],
        c["CD"],
        c["L"],
        c["active"],
        c["bt"] + beta_star[None, :],
        res,
        jnp.asarray(1),
        res[None],
    )


# ------------------------------------------------------------------------------------------------------------
# Scheme A: damped Picard iteration of the whole-horizon map
# ------------------------------------------------------------------------------------------------------------


def _paths(
    p: Params, beta_star: Array, rho: Float[Array, "t ..."], H: Float[Array, "t t"], form: str
) -> Float[Array, "t ..."]:
    """β̃(t) of samples driven by a given ρ path, the memory kernel H held fixed (any trailing shape)."""
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
    p: Params,
    beta_star: Array,
    z: Array,
    H: Array,
    L: Array,
    active: Array,
    form: str,
    response: str | None,
    chunk: int = 64,
) -> tuple[Array, Array | None]:
    """New (B̃, R) from samples driven by ρ = 𝐋Z with H fixed (R is None when ``response`` is None)."""
    T, S = z.shape
    rho = L @ z
    bt = _paths(p, beta_star, rho, H, form)
    if response is None:
        return bt, None
    if response == "stein":
        G = bt @ z.T / S  # G[t, r] = E β̃(t)Z(r)
        R = jax.vmap(lambda g, t: stein_row(L, active, g, t))(G, jnp.arange(T))
    else:
        R = jnp.tril(_mean_jacobian(p, beta_star, rho, H, form, chunk), k=-1)
    return bt, R


def _closure(p: Params, B: Array, R: Array) -> tuple[Array, Array, Array]:
    """H = (I + R)⁻¹ and the causal factor 𝐋 of αC_Δ from the sample paths B̃ (T, S) and R."""
    H = transfer(R)
    S = B.shape[1]
    G = jnp.sqrt(p.alpha) * jnp.concatenate(
        [p.noise * jnp.sum(H, axis=1, keepdims=True), H @ B / jnp.sqrt(S)], 1
    )
    L, _, active = causal_lq(G)
    return H, L, active


def picard_solve(
    p: Params,
    beta_star: Float[Array, " s"],
    z: Float[Array, "t s"],
    *,
    form: str,
    response: str = "jvp",
    damping: float | Array = 1.0,
    tol: float | Array = 1e-8,
    max_iter: int = 200,
    chunk: int = 64,
) -> Solution:
    """Scheme A (diagonal_linear.md §5): x ← (1 − θ)x + θF(x) on x = (B̃, R), the sample paths β̃_i(t) and the
    response, from B̃ = −β* (nothing learnt, C_β̃ = ρ*𝟙𝟙ᵀ) and R = 0.

    F: H = (I + R)⁻¹, 𝐋 from G = √α H[σ_ε𝟙, B̃/√S], ρ = 𝐋Z, run the samples, return their paths and R. The
    residual is max|F(x) − x|. F is strictly causal (row t of F(x) depends on rows < t of x), so plain
    iteration (θ = 1) is exact after at most T steps; θ < 1 converges too, more slowly. ``chunk`` samples at a
    time carry jvp tangents (memory chunk·T²).
    """
    require_x64("picard_solve")
    T, S = z.shape

    def F(x: tuple[Array, Array]) -> tuple[Array, Array]:
        H, L, active = _closure(p, *x)
        return _picard_map_parts(p, beta_star, z, H, L, active, form, response, chunk)

    x0 = (jnp.broadcast_to(-beta_star[None, :], (T, S)), jnp.zeros((T, T), dtype=z.dtype))
    fp = damped_fixed_point(F, x0, damping=damping, tol=tol, max_iter=max_iter)
    B, R = fp.x
    H, L, active = _closure(p, B, R)
    C = B @ B.T / S
    CD = residual_covariance(H, C, jnp.asarray(p.noise))
    return Solution(C, R, H, CD, L, active, B + beta_star[None, :], fp.residual, fp.iterations, fp.history)
