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
from .problem import Form, Params, State, form_of

__all__ = ["Solution", "causal_solve", "picard_solve"]


class Solution(NamedTuple):
    """Order parameters of one solve, named as in the Dataset. ``beta`` holds the sampled paths β_i(t), (T, S).

    ``C``, ``R`` and ``CD`` are kept as aliases of ``C_beta``, ``R_beta`` and ``C_delta``.
    """

    C_beta: Float[Array, "t t"]  # C_β̃
    R_beta: Float[Array, "t t"]  # response of β to ρ, strictly lower
    H: Float[Array, "t t"]  # (I + R)⁻¹
    C_delta: Float[Array, "t t"]  # C_Δ
    L: Float[Array, "t t"]  # causal factor of αC_Δ = 𝐋𝐋ᵀ
    active: Bool[Array, " t"]  # rows of 𝐋 with a nonzero pivot
    beta: Float[Array, "t s"]
    residual: Float[Array, ""]  # max|F(x) − x| of the self-consistency map at the solution
    iterations: Int[Array, ""]
    history: Float[Array, " n"]  # residual per Picard iteration (one entry for the causal pass)

    @property
    def C(self) -> Array:  # noqa: N802  (alias)
        return self.C_beta

    @property
    def R(self) -> Array:  # noqa: N802  (alias)
        return self.R_beta

    @property
    def CD(self) -> Array:  # noqa: N802  (alias)
        return self.C_delta


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
RESPONSES = ("jvp", "stein")


def _response_is_jvp(response: str) -> bool:
    """True for exact tangents, False for the Stein estimate (``solver.response``; checked once)."""
    if response not in RESPONSES:
        raise ValueError(f"solver.response = {response!r}: must be one of {', '.join(RESPONSES)}")
    return response == "jvp"


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


class _Causal(NamedTuple):
    """What the causal pass holds fixed: the samples, the form, the response kind and the padded sizes."""

    p: Params
    beta_star: Array
    z: Array
    fm: Form
    jvp: bool
    T: int
    S: int
    Tp: int  # directions of the tangents, padded to a multiple of the history block
    block: int


def _causal_setup(p: Params, beta_star: Array, z: Array, form: str | Form, response: str) -> _Causal:
    T, S = z.shape
    block = -(-T // 12)
    return _Causal(p, beta_star, z, form_of(form), _response_is_jvp(response), T, S, block * (-(-T // block)), block)


def _causal_init(k: _Causal) -> dict:
    """Empty rows of every order parameter; with jvp, the tangents ∂(u, v)_i/∂ρ(s) and the history
    X[r] = ∂β_i(r)/∂ρ(s) (directions padded to Tp)."""
    w0 = k.fm.init(k.p, (k.S,))
    zeros = jnp.zeros((k.T, k.T))
    carry = {"w": w0, "bt": jnp.zeros((k.T, k.S)), "C": zeros, "R": zeros, "H": zeros, "CD": zeros, "L": zeros,
             "Q": jnp.zeros((k.T, k.S + 1)), "active": jnp.zeros(k.T, dtype=bool)}
    if k.jvp:
        carry["dw"] = tuple(jnp.zeros((k.S, k.Tp)) for _ in w0)
        carry["X"] = history_init(k.S, k.Tp, k.block)
    return carry


def _coordinate_rows(k: _Causal, c: dict, t: Array) -> dict:
    """Coordinate site at step t: β̃(t) of the samples, row t of C_β̃ and of the response R (exact tangents or
    Stein)."""
    btil = k.fm.beta(c["w"]) - k.beta_star
    c["bt"] = c["bt"].at[t].set(btil)
    c_row = c["bt"] @ btil / k.S
    c["C"] = c["C"].at[t].set(c_row).at[:, t].set(c_row)
    if k.jvp:
        dbeta = _tangent_map(k.fm.beta, (c["w"],), (c["dw"],))  # (S, Tp)
        c["X"] = history_write(c["X"], dbeta, t)
        r_row = jnp.where(jnp.arange(k.T) < t, jnp.mean(dbeta, axis=0)[: k.T], 0.0)
    else:
        r_row = stein_row(c["L"], c["active"], k.z @ btil / k.S, t)
    c["R"] = c["R"].at[t].set(r_row)
    return c


def _sample_site_rows(k: _Causal, c: dict, t: Array) -> tuple[dict, Array, Array]:
    """Sample site at step t: row t of H = (I + R)⁻¹ (forward substitution), of C_Δ and of the causal factor 𝐋.
    Returns the carry, h = H(t,:) and h·B̃."""
    alpha, noise = jnp.asarray(k.p.alpha), jnp.asarray(k.p.noise)
    h = jnp.where(jnp.arange(k.T) == t, 1.0, 0.0) - c["R"][t] @ c["H"]
    c["H"] = c["H"].at[t].set(h)
    cd_row = (h @ (noise**2 + c["C"])) @ c["H"].T
    c["CD"] = c["CD"].at[t].set(cd_row).at[:, t].set(cd_row)
    hb = h @ c["bt"]
    l_row, c["Q"], ok = extend_lq(c["Q"], noise_data_row(h, hb, alpha, noise), t)
    c["L"], c["active"] = c["L"].at[t].set(l_row), c["active"].at[t].set(ok)
    return c, h, hb


def _advance(k: _Causal, c: dict, t: Array, h: Array, hb: Array) -> dict:
    """ρ(t) = 𝐋(t,:)Z, q̂(t) = ρ(t)/α − H(t,:)B̃, and the GD step of the samples (and of their tangents)."""
    alpha = jnp.asarray(k.p.alpha)
    step_fn = lambda w, q: k.fm.step(w, q, k.p)
    w = c["w"]
    qhat = c["L"][t] @ k.z / alpha - hb
    c["w"] = step_fn(w, qhat)
    if k.jvp:
        h_p = jnp.pad(h, (0, k.Tp - k.T))
        kick = jnp.where(jnp.arange(k.Tp) == t, 1.0 / alpha, 0.0)  # ∂q̂(t)/∂ρ(s) = δ_ts/α
        dq = kick[None, :] - history_contract(c["X"], h_p, t)
        c["dw"] = _tangent_map(step_fn, (w, qhat), (c["dw"], dq))
    return c


def _causal_residual(k: _Causal, c: dict) -> Array:
    """Self-consistency check: re-run the samples with the final H and 𝐋 and compare the paths (and R for
    Stein)."""
    fB, fR = _picard_map_parts(k.p, k.beta_star, k.z, c["H"], c["L"], c["active"], k.fm,
                               None if k.jvp else "stein")
    res = jnp.max(jnp.abs(fB - c["bt"]))
    if fR is not None:
        res = jnp.maximum(res, jnp.max(jnp.abs(fR - c["R"])))
    return res


def causal_solve(
    p: Params,
    beta_star: Float[Array, " s"],
    z: Float[Array, "t s"],
    *,
    form: str | Form,
    response: str = "jvp",
) -> Solution:
    """Scheme B (diagonal_linear.md §5): one pass over t, exact for the sampled system.

    Per step t: β(t) and its tangents from the samples, row t of C_β̃ and R (:func:`_coordinate_rows`); row t of
    H = (I + R)⁻¹ by forward substitution, H(t,:) = e_t − R(t,:)H, of C_Δ, and of G and 𝐋 (:func:`extend_lq`)
    (:func:`_sample_site_rows`); ρ(t) = 𝐋(t,:)Z, q̂(t) and the GD step of the samples and of their tangents
    (:func:`_advance`).
    """
    require_x64("causal_solve")
    k = _causal_setup(p, beta_star, z, form, response)

    def body(c: dict, t: Array) -> tuple[dict, None]:
        c = _coordinate_rows(k, dict(c), t)
        c, h, hb = _sample_site_rows(k, c, t)
        return _advance(k, c, t, h, hb), None

    c, _ = jax.lax.scan(body, _causal_init(k), jnp.arange(k.T))
    res = _causal_residual(k, c)
    return Solution(c["C"], c["R"], c["H"], c["CD"], c["L"], c["active"], c["bt"] + beta_star[None, :], res,
                    jnp.asarray(1), res[None])


# ------------------------------------------------------------------------------------------------------------
# Scheme A: damped Picard iteration of the whole-horizon map
# ------------------------------------------------------------------------------------------------------------


def _paths(
    p: Params, beta_star: Array, rho: Float[Array, "t ..."], H: Float[Array, "t t"], form: str | Form
) -> Float[Array, "t ..."]:
    """β̃(t) of samples driven by a given ρ path, the memory kernel H held fixed (any trailing shape)."""
    T = rho.shape[0]
    fm = form_of(form)
    w0: State = fm.init(p, beta_star.shape)

    def body(carry: tuple[State, Array], t: Array) -> tuple[tuple[State, Array], None]:
        w, bt = carry
        bt = bt.at[t].set(fm.beta(w) - beta_star)
        qhat = rho[t] / p.alpha - jnp.tensordot(H[t], bt, axes=1)
        return (fm.step(w, qhat, p), bt), None

    (_, bt), _ = jax.lax.scan(body, (w0, jnp.zeros_like(rho)), jnp.arange(T))
    return bt


def _mean_jacobian(
    p: Params, beta_star: Array, rho: Float[Array, "t s"], H: Float[Array, "t t"], form: str | Form, chunk: int
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
    form: str | Form,
    response: str | None,
    chunk: int = 64,
) -> tuple[Array, Array | None]:
    """New (B̃, R) from samples driven by ρ = 𝐋Z with H fixed (R is None when ``response`` is None)."""
    T, S = z.shape
    rho = L @ z
    bt = _paths(p, beta_star, rho, H, form)
    if response is None:
        return bt, None
    if not _response_is_jvp(response):
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
    form: str | Form,
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
