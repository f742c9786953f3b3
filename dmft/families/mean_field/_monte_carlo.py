r"""Monte Carlo single-site solver of μP kernel DMFT for any activation (mean_field.md §3, §4, §7, §8).

Order parameters on a = (t, μ), time-major, TM × TM (M = P + Q points, Δ ≡ 0 on the Q test points):
Φ^ℓ (ℓ = 0..L, Φ^0 = K^x), G^ℓ (ℓ = 1..L+1, G^{L+1} ≡ 1), responses A^ℓ (ℓ = 1..L−1), B^ℓ (ℓ = 1..L−1).
With c = ηγ0/P and the strictly-lower time mask SL,

    𝒜^{ℓ−1} = A^{ℓ−1} + c SL∘Φ^{ℓ−1}Δ_ν(s),   ℬ^ℓ = B^ℓ + c SL∘G^{ℓ+1}Δ_ν(s),

and one neuron of layer ℓ is the explicit causal scan (§3): at each t,

    h(t) = u(t) + Σ_{s<t} 𝒜^{ℓ−1}(t,s) g(s),   φ(t) = φ(h(t)),   z(t) = r(t) + Σ_{s≤t} ℬ^ℓ(t,s) φ(s),
    g(t) = φ′(h(t)) z(t),

with sources u^ℓ ~ GP(0, σ²Φ^{ℓ−1}) (u^1: one M-vector, covariance σ²K^x, constant in t), r^ℓ ~ GP(0, σ²G^{ℓ+1})
(ℓ < L) and r^L = w(0) ~ N(0, σ_w²). The first layer's 𝒜^0 = c SL∘K^xΔ and the readout's ℬ^L = c SL∘Δ are
carried as running sums (O(M²) per step instead of O(TM²)), so depth 1 (no responses at all) is cheap.

Closure (§3): Φ^ℓ = ⟨φφᵀ⟩, G^ℓ = ⟨ggᵀ⟩, A^ℓ = σ²⟨∂φ(h^ℓ)/∂r^ℓ⟩, B^{ℓ−1} = σ²⟨∂g^ℓ/∂u^ℓ⟩ (ℓ ≥ 2), by exact
forward-mode Jacobians of the scan (``response="jvp"``, O((TM)³) per sample) or Stein's lemma
(``"stein"``: A^ℓ = ⟨φ r^ℓᵀ⟩G^{ℓ+1,+}, B^{ℓ−1} = ⟨g u^ℓᵀ⟩Φ^{ℓ−1,+}, O((TM)²) per sample, noisier); A is
projected on strictly causal, B on causal (same-time block kept: B(t,t) ≠ 0 for nonlinear φ, t > 0).

Outputs (§4): ``output="exact"``: f_μ(t) = γ0⁻¹⟨z^L_μ(t)φ(h^L_μ(t)) − w(0)φ(h^L_μ(0))⟩ (the subtracted term has
mean exactly zero: a control variate that turns an O(1/(γ0√S)) error into O(ηt/√S)); ``"tangent"``:
f(t+1) = f(t) + (η/P)K(t)Δ(t), K(t) = Σ_{ℓ=0}^{L} G^{ℓ+1}(t,t)∘Φ^ℓ(t,t).

Iteration (§7): start from the t = 0 kernels (tiled in time) and the lazy residuals; damped outer iteration of
(Φ, G, f) and (A, B) with separate mixings, staged sample counts, common random numbers, averaging over the last
iterates (:func:`solvers.single_site.damped_iteration`). Sources are sampled by a time-major Cholesky factor by
default, which keeps the sampled map causal: with mixing 1 the iteration then reaches its fixed point exactly.
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from solvers.single_site import chunked_average, damped_iteration, mean_jacobian, pinv_psd, psd_factor

from ..._jax import require_x64
from ...spectra.outliers import Grams
from .problem import activation as _activation
from ._kernels import initial_kernels
from ._types import MeanFieldSolution

__all__ = ["solve_monte_carlo", "monte_carlo_grams", "MonteCarloGrams", "MC_GRAM_THRESHOLD"]

#: Eigen-threshold of the reduced spike basis (``threshold`` of ``outlier_singular_values`` /
#: ``hidden_layer_outliers``) to use with Monte Carlo Grams. With the default 1e-10, spike directions whose Gram
#: eigenvalue is at the Monte Carlo noise level are kept and create spurious outliers just above the edge (ReLU,
#: depth 2, tP = 80 spikes, S = 4000: "outliers" 1.84 where the N = 2048 twin has none; 1.41 at S = 16000); 1e-3
#: removes them and moves true outliers by < 0.005 (linear φ vs closed form, tanh vs twin).
MC_GRAM_THRESHOLD = 1e-3


class _Static(NamedTuple):
    """Static (compile-time) settings of one solve."""

    activation: str
    depth: int
    T: int
    M: int
    P: int
    chunk: int
    response: str
    output: str
    factor: str
    thr: float  # divergence threshold: Δ frozen at 0 once the train loss exceeds thr × its initial value
    antithetic: bool  # pairs (u, r), (u, −r) of backward sources


def _default_chunk(samples: int, tm: int, response: str, depth: int) -> int:
    """Samples per chunk: at least 8 chunks for batch means; jvp Jacobians (chunk·(TM)²) kept ≲ 50 MB."""
    c = min(256, max(1, -(-samples // 8)))
    if response == "jvp" and depth >= 2:
        c = min(c, max(1, int(6e6 // (tm * tm))))
    return max(2, c + c % 2)  # even: antithetic pairs live within a chunk


# ------------------------------------------------------------------------------------------------------------
# One neuron: the causal scan of §3
# ------------------------------------------------------------------------------------------------------------


def _path(
    u: Float[Array, "T M"], r: Float[Array, "T M"], ops: dict[str, Array], *, st: _Static, first: bool, last: bool
) -> tuple[Array, Array, Array, Array]:
    """(h, φ(h), z, g), each (T, M), of one neuron driven by sources (u, r) with the spike operators held fixed.

    ``ops``: ``delta`` (T, M), ``c`` = ηγ0/P, and ``Kc`` = cK^x (first layer) or ``Aop`` = 𝒜^{ℓ−1} as
    (T, M, TM); ``Bop`` = ℬ^ℓ as (T, M, TM) unless ``last``.
    """
    phi = _activation(st.activation)
    T, M = st.T, st.M
    delta, c = ops["delta"], ops["c"]

    def step(carry: tuple[Array, ...], t: Array) -> tuple[tuple[Array, ...], tuple[Array, ...]]:
        g_hist, p_hist, cg, cp = carry
        h = u[t] + (ops["Kc"] @ cg if first else ops["Aop"][t] @ g_hist.reshape(-1))
        p, dp = jax.jvp(phi, (h,), (jnp.ones_like(h),))
        p_hist = p_hist.at[t].set(p)
        z = r[t] + (c * cp if last else ops["Bop"][t] @ p_hist.reshape(-1))
        g = dp * z
        g_hist = g_hist.at[t].set(g)
        return (g_hist, p_hist, cg + delta[t] * g, cp + delta[t] @ p), (h, p, z, g)

    zero = jnp.zeros((T, M), dtype=u.dtype)
    init = (zero, zero, jnp.zeros(M, dtype=u.dtype), jnp.zeros((), dtype=u.dtype))
    _, (h, p, z, g) = jax.lax.scan(step, init, jnp.arange(T))
    return h, p, z, g


# ------------------------------------------------------------------------------------------------------------
# Order parameters ↔ operators
# ------------------------------------------------------------------------------------------------------------


def _masks(T: int, M: int) -> tuple[Array, Array]:
    """Strictly-causal and causal masks on the time-major (TM, TM) index."""
    t = jnp.repeat(jnp.arange(T), M)
    return (t[None, :] < t[:, None]).astype(float), (t[None, :] <= t[:, None]).astype(float)


def _loss_ok(loss: Array, loss0: Array, thr: float) -> Array:
    """Not diverged: finite and at most thr × the initial loss."""
    return jnp.isfinite(loss) & (loss <= thr * jnp.maximum(loss0, jnp.finfo(float).tiny))


def _alive(f: Float[Array, "T M"], y: Float[Array, " P"], P: int, thr: float) -> Float[Array, " T"]:
    """1 up to (excluding) the first step whose train loss diverged, 0 from there on."""
    loss = 0.5 * jnp.mean((y[None, :] - f[:, :P]) ** 2, axis=1)
    return jnp.cumprod(_loss_ok(loss, loss[0], thr)).astype(f.dtype)


def _delta(f: Float[Array, "T M"], y: Float[Array, " P"], P: int, thr: float) -> Float[Array, "T M"]:
    """Δ = y − f on the P training points, 0 on the test points and after a divergence (dynamics frozen)."""
    d = jnp.zeros_like(f).at[:, :P].set(y[None, :] - f[:, :P]) * _alive(f, y, P, thr)[:, None]
    return jnp.nan_to_num(d, nan=0.0, posinf=0.0, neginf=0.0)


def _tile(k: Float[Array, "M M"], T: int) -> Float[Array, "TM TM"]:
    """A time-independent kernel as a (TM, TM) two-time object."""
    return jnp.tile(k, (T, T))


class _Hyper(NamedTuple):
    kx: Array
    y: Array
    gamma0: Array
    sigma: Array
    sigma_w: Array
    lr: Array
    key: Array


def _layer_ops(x: dict, hp: _Hyper, st: _Static, ell: int) -> dict[str, Array]:
    """Spike operators of layer ℓ (1-based) from the state x (§3)."""
    T, M, L = st.T, st.M, st.depth
    sl, _ = _masks(T, M)
    delta = _delta(x["corr"]["f"], hp.y, st.P, st.thr)
    c = hp.lr * hp.gamma0 / st.P
    dcol = delta.reshape(-1)[None, :]
    ops = {"delta": delta, "c": c}
    if ell == 1:
        ops["Kc"] = c * hp.kx
    else:
        aop = x["resp"]["A"][ell - 2] + c * sl * x["corr"]["Phi"][ell - 2] * dcol
        ops["Aop"] = aop.reshape(T, M, T * M)
    if ell < L:
        bop = x["resp"]["B"][ell - 1] + c * sl * x["corr"]["G"][ell - 1] * dcol
        ops["Bop"] = bop.reshape(T, M, T * M)
    return ops


def _antithetic(st: _Static) -> dict[str, list[bool]]:
    """Antithetic flags of the sources: every r^ℓ (independent of the u^ℓ) when ``st.antithetic``."""
    return {"u": [False] * st.depth, "r": [st.antithetic] * st.depth}


def _factors(x: dict, hp: _Hyper, st: _Static, jitter: float) -> dict[str, list[Array]]:
    """Factors F (FFᵀ = covariance) of the sources u^ℓ and r^ℓ of every layer."""
    L = st.depth
    s2 = hp.sigma**2
    fu = [psd_factor(s2 * hp.kx, jitter=jitter, method=st.factor)]
    fu += [psd_factor(s2 * x["corr"]["Phi"][ell - 2], jitter=jitter, method=st.factor) for ell in range(2, L + 1)]
    fr = [psd_factor(s2 * x["corr"]["G"][ell - 1], jitter=jitter, method=st.factor) for ell in range(1, L)]
    fr += [jnp.reshape(hp.sigma_w, (1, 1)).astype(float)]
    return {"u": fu, "r": fr}


# ------------------------------------------------------------------------------------------------------------
# One Monte Carlo pass: sample averages at fixed order parameters
# ------------------------------------------------------------------------------------------------------------


def _chunk_stats(
    src: dict, w: Array, x: dict, hp: _Hyper, st: _Static, *, final: bool, grams: bool
) -> tuple[dict, dict]:
    """Weighted sums over one chunk of every average the closure needs (and, if ``grams``, the level-2 ones)."""
    T, M, L = st.T, st.M, st.depth
    tm = T * M
    s2 = hp.sigma**2
    n = w.shape[0]
    sums: dict[str, Any] = {"Phi": [], "G": [], "A": [], "B": [], "gy": [], "yy": [], "pz": [], "zz": []}
    per: dict[str, Any] = {"Phi_eq": [], "G_eq": []}
    for ell in range(1, L + 1):
        first, last = ell == 1, ell == L
        ops = _layer_ops(x, hp, st, ell)
        u = src["u"][ell - 1]
        u = jnp.broadcast_to(u[:, None, :], (n, T, M)) if first else u.reshape(n, T, M)
        r = src["r"][ell - 1]
        r = jnp.broadcast_to(r[:, :, None], (n, T, M)) if last else r.reshape(n, T, M)
        path = partial(_path, ops=ops, st=st, first=first, last=last)
        h, p, z, g = jax.vmap(path)(u, r)
        pf, gf = p.reshape(n, tm), g.reshape(n, tm)
        if ell < L or final:
            sums["Phi"].append((pf * w[:, None]).T @ pf)
        if ell > 1 or final:
            sums["G"].append((gf * w[:, None]).T @ gf)
        per["Phi_eq"].append(jnp.einsum("c,ctm,ctn->tmn", w, p, p))
        per["G_eq"].append(jnp.einsum("c,ctm,ctn->tmn", w, g, g))
        if ell < L:  # A^ℓ = σ²⟨∂φ(h^ℓ)/∂r^ℓ⟩
            if st.response == "jvp":
                fa = lambda rf, uu: path(uu, rf.reshape(T, M))[1].reshape(-1)  # noqa: E731
                sums["A"].append(s2 * mean_jacobian(fa, r.reshape(n, tm), w, u))
            else:
                sums["A"].append((pf * w[:, None]).T @ r.reshape(n, tm))
        if ell > 1:  # B^{ℓ−1} = σ²⟨∂g^ℓ/∂u^ℓ⟩
            if st.response == "jvp":
                fb = lambda uf, rr: path(uf.reshape(T, M), rr)[3].reshape(-1)  # noqa: E731
                sums["B"].append(s2 * mean_jacobian(fb, u.reshape(n, tm), w, r))
            else:
                sums["B"].append((gf * w[:, None]).T @ u.reshape(n, tm))
        if last:  # exact output with the control variate w(0)φ(h^L(0)) (mean zero)
            fs = jnp.einsum("c,ctm->tm", w, z * p - r[:, :1, :] * p[:, :1, :])
            sums["f"] = fs
            per["f"] = fs
        if grams and ell > 1:  # left space of M^{ℓ−1}: χ^ℓ = u^ℓ + A^{ℓ−1}g^ℓ
            chi = u.reshape(n, tm) + gf @ x["resp"]["A"][ell - 2].T
            sums["gy"].append((gf * w[:, None]).T @ chi)
            sums["yy"].append((chi * w[:, None]).T @ chi)
        if grams and ell < L:  # right space of M^ℓ: ξ^ℓ = r^ℓ + B^ℓφ^ℓ
            xi = r.reshape(n, tm) + pf @ x["resp"]["B"][ell - 1].T
            sums["pz"].append((pf * w[:, None]).T @ xi)
            sums["zz"].append((xi * w[:, None]).T @ xi)
    per = {k: jnp.stack(v) if isinstance(v, list) else v for k, v in per.items()}
    return sums, per


def _ntk(phi_eq: Array, g_eq: Array, kx: Array) -> Float[Array, "T M M"]:
    """K(t) = Σ_{ℓ=0}^{L} G^{ℓ+1}(t,t)∘Φ^ℓ(t,t) from equal-time blocks of Φ^{1..L} and G^{1..L} (§4)."""
    return g_eq[0] * kx[None] + jnp.sum(g_eq[1:] * phi_eq[:-1], axis=0) + phi_eq[-1]


def _march_f(
    f0: Float[Array, " M"], k: Float[Array, "T M M"], extra: Float[Array, "T M"], y: Array, lr: Array, P: int,
    thr: float,
) -> Float[Array, "T M"]:
    """f(t+1) = f(t) + (η/P)K(t)[:, :P]Δ(t) + extra(t), with Δ frozen at 0 once the loss diverged."""
    loss0 = 0.5 * jnp.mean((y - f0[:P]) ** 2)

    def step(c: tuple[Array, Array], inp: tuple[Array, Array]) -> tuple[tuple[Array, Array], Array]:
        f, alive = c
        kt, et = inp
        alive = alive & _loss_ok(0.5 * jnp.mean((y - f[:P]) ** 2), loss0, thr)
        fn = jnp.where(alive, f + (lr / P) * kt[:, :P] @ (y - f[:P]) + et, f)
        return (fn, alive), f

    _, fs = jax.lax.scan(step, (f0, jnp.asarray(True)), (k, extra))
    return fs


def _tangent_f(k: Float[Array, "T M M"], y: Array, lr: Array, P: int, thr: float) -> Float[Array, "T M"]:
    """f(0) = 0, f(t+1) = f(t) + (η/P)K(t)[:, :P]Δ(t) (§4)."""
    return _march_f(jnp.zeros(k.shape[-1], dtype=k.dtype), k, jnp.zeros(k.shape[:2], dtype=k.dtype), y, lr, P, thr)


def _corrected_f(
    f_mc: Float[Array, "T M"], k: Float[Array, "T M M"], f_old: Float[Array, "T M"], y: Array, lr: Array, P: int,
    thr: float,
) -> Float[Array, "T M"]:
    """Exact output, re-marched in t with the tangent kernel as predictor:

        f(0) = f_mc(0),   f(t+1) = f(t) + (η/P)K(t)Δ(t) + [f_mc(t+1) − f_mc(t) − (η/P)K(t)Δ_old(t)],

    where f_mc is the sample average γ0⁻¹⟨z^Lφ(h^L) − w(0)φ(h^L(0))⟩ of paths driven by Δ_old. At the fixed point
    (Δ = Δ_old) f = f_mc exactly; away from it the O(η) dependence on Δ is taken inside the pass, leaving only the
    O(η²) bracket to the outer iteration (plain Picard on f_mc alone grows like e^{ηλt} before it converges).
    """
    d_old = _delta(f_old, y, P, thr)[:, :P]
    corr = f_mc[1:] - f_mc[:-1] - (lr / P) * jnp.einsum("tmp,tp->tm", k[:-1, :, :P], d_old[:-1])
    corr = jnp.concatenate([jnp.nan_to_num(corr), jnp.zeros_like(corr[:1])])
    return _march_f(f_mc[0], k, corr, y, lr, P, thr)


def _update(
    x: dict, samples: int, final: bool, *, hp: _Hyper, st: _Static, jitter: float, rcond: float, grams: bool = False,
    two_time: bool = True,
) -> tuple[dict, dict]:
    """F(x): one Monte Carlo pass at fixed order parameters, and auxiliary outputs (batch values, final fields;
    the full two-time Φ^ℓ, G^ℓ of every layer only when ``final and two_time``)."""
    final = final and two_time
    T, M, L = st.T, st.M, st.depth
    sl, cm = _masks(T, M)
    factors = _factors(x, hp, st, jitter)
    stat = lambda src, w: _chunk_stats(src, w, x, hp, st, final=final, grams=grams)  # noqa: E731
    means, per = chunked_average(
        stat, hp.key, factors, samples=samples, chunk=st.chunk, antithetic=_antithetic(st)
    )
    phi_eq = jnp.sum(per["Phi_eq"], axis=0) / samples
    g_eq = jnp.sum(per["G_eq"], axis=0) / samples
    nb = per["Phi_eq"].shape[0]
    counts = jnp.clip(samples - st.chunk * jnp.arange(nb), 1, st.chunk).astype(float)  # samples per chunk
    k = _ntk(phi_eq, g_eq, hp.kx)
    scale = 1.0 / counts[:, None, None, None, None]
    kb = jax.vmap(_ntk, in_axes=(0, 0, None))(per["Phi_eq"] * scale, per["G_eq"] * scale, hp.kx)
    if st.output == "exact":
        f = _corrected_f(means["f"] / hp.gamma0, k, x["corr"]["f"], hp.y, hp.lr, st.P, st.thr)
        f_mc_b = per["f"] / (counts[:, None, None] * hp.gamma0)
        f_batch = jax.vmap(_corrected_f, in_axes=(0, 0, None, None, None, None, None))(
            f_mc_b, kb, x["corr"]["f"], hp.y, hp.lr, st.P, st.thr
        )
    else:
        f = _tangent_f(k, hp.y, hp.lr, st.P, st.thr)
        f_batch = jax.vmap(_tangent_f, in_axes=(0, None, None, None, None))(kb, hp.y, hp.lr, st.P, st.thr)
    phi_new = jnp.stack(means["Phi"][: L - 1]) if L > 1 else x["corr"]["Phi"]
    g_new = jnp.stack(means["G"][-(L - 1):]) if L > 1 else x["corr"]["G"]
    a_new, b_new = x["resp"]["A"], x["resp"]["B"]
    if L > 1:
        a_raw, b_raw = jnp.stack(means["A"]), jnp.stack(means["B"])
        if st.response == "stein":
            g_src = x["corr"]["G"]  # G^{ℓ+1}, ℓ = 1..L−1: the covariances the sources were drawn from
            phi_src = x["corr"]["Phi"]  # Φ^{ℓ−1}, ℓ = 2..L
            a_raw = jnp.stack([a_raw[i] @ pinv_psd(g_src[i], rcond=rcond) for i in range(L - 1)])
            b_raw = jnp.stack([b_raw[i] @ pinv_psd(phi_src[i], rcond=rcond) for i in range(L - 1)])
        a_new, b_new = a_raw * sl, b_raw * cm
    fx = {"corr": {"Phi": phi_new, "G": g_new, "f": f}, "resp": {"A": a_new, "B": b_new}}
    aux = {"f_batch": f_batch, "phi_eq": phi_eq, "g_eq": g_eq}
    if final:
        aux["Phi_all"] = jnp.stack(means["Phi"])
        aux["G_all"] = jnp.stack(means["G"])
    if grams:
        aux.update({k: means[k] for k in ("gy", "yy", "pz", "zz")})
    return fx, aux


# ------------------------------------------------------------------------------------------------------------
# Starting point: t = 0 kernels and the lazy residuals (§5)
# ------------------------------------------------------------------------------------------------------------


def _initial_state(hp: _Hyper, st: _Static) -> dict:
    """Φ^ℓ(0), G^ℓ(0) (:func:`initial_kernels`, tiled in time), A = B = 0, and f of the lazy oracle (§5, §7.1)."""
    T, L = st.T, st.depth
    ik = initial_kernels(hp.kx, activation=st.activation, depth=L, sigma=hp.sigma, sigma_w=hp.sigma_w)
    f = _tangent_f(jnp.broadcast_to(ik.ntk, (T, st.M, st.M)), hp.y, hp.lr, st.P, st.thr)  # lazy oracle
    zeros = jnp.zeros((L - 1, T * st.M, T * st.M))
    return {
        "corr": {
            "Phi": jax.vmap(_tile, (0, None))(ik.Phi[1:L], T) if L > 1 else zeros,
            "G": jax.vmap(_tile, (0, None))(ik.G[1:L], T) if L > 1 else zeros,
            "f": f,
        },
        "resp": {"A": zeros, "B": zeros},
    }


# ------------------------------------------------------------------------------------------------------------
# Public solver
# ------------------------------------------------------------------------------------------------------------


def _blocks(x: Float[Array, "TM TM"], T: int, M: int) -> Float[Array, "T M T M"]:
    return x.reshape(T, M, T, M)


@partial(
    jax.jit,
    static_argnames=(
        "st", "samples", "iterations", "stages", "damping", "response_damping", "tol", "average", "jitter",
        "rcond", "two_time",
    ),
)
def _solve(
    hp: _Hyper,
    y_test: Array,
    *,
    st: _Static,
    samples: int,
    iterations: int,
    stages: tuple[tuple[int, int], ...],
    damping: float,
    response_damping: float,
    tol: float,
    average: int,
    jitter: float,
    rcond: float,
    two_time: bool,
) -> MeanFieldSolution:
    T, M, P = st.T, st.M, st.P
    x0 = _initial_state(hp, st)
    upd = partial(_update, hp=hp, st=st, jitter=jitter, rcond=rcond, two_time=two_time)
    res = damped_iteration(
        upd, x0, mixing={"corr": damping, "resp": response_damping}, stages=stages, tol=tol, average=average
    )
    fx, aux = res.fx, res.aux
    f = fx["corr"]["f"]
    Q = y_test.shape[0]
    train = 0.5 * jnp.mean((hp.y[None, :] - f[:, :P]) ** 2, axis=1)
    bad = ~_loss_ok(train, train[0], st.thr)
    step = jnp.where(jnp.any(bad), jnp.argmax(bad), -1)
    diverged = jnp.any(bad) | ~jnp.isfinite(res.residual)
    shown = (step < 0) | (jnp.arange(T) <= step)  # NaN after the divergence step (dynamics frozen there)
    f = jnp.where(shown[:, None], f, jnp.nan)
    train = jnp.where(shown, train, jnp.nan)
    test = (
        0.5 * jnp.mean((y_test[None, :] - f[:, P:]) ** 2, axis=1) if Q > 0 else jnp.full(T, jnp.nan)
    )
    # batch-means error of the train loss, to first order: δloss = −P⁻¹ Σ_μ Δ_μ δf_μ
    fb = aux["f_batch"]
    lin = -jnp.einsum("tp,btp->bt", hp.y[None, :] - f[:, :P], fb[:, :, :P]) / P
    nb = fb.shape[0]
    mc_error = jnp.std(lin, axis=0, ddof=1) / jnp.sqrt(nb) if nb > 1 else jnp.full(T, jnp.nan)
    phi = g = a = b = None
    if two_time:
        kxt = _blocks(_tile(hp.kx, T), T, M)
        blocks = jax.vmap(_blocks, (0, None, None))
        phi = jnp.concatenate([kxt[None], blocks(aux["Phi_all"], T, M)])
        g = jnp.concatenate([blocks(aux["G_all"], T, M), jnp.ones((1, T, M, T, M))])
        zeros = jnp.zeros((1, T, M, T, M))
        a = jnp.concatenate([zeros, blocks(fx["resp"]["A"], T, M)])
        b = jnp.concatenate([blocks(fx["resp"]["B"], T, M), zeros])
    ntk = _ntk(aux["phi_eq"], aux["g_eq"], hp.kx)
    return MeanFieldSolution(
        f=f, train_loss=train, test_loss=test, Phi=phi, G=g, A=a, B=b, ntk=ntk, residual=res.residual,
        converged=(res.residual <= tol + 1e-2 * jnp.nanmax(mc_error)) & ~diverged, diverged=diverged,
        divergence_step=step.astype(int),
        mc_error=mc_error, Phi_diag=jnp.concatenate([jnp.broadcast_to(hp.kx, (1, T, M, M)), aux["phi_eq"]]),
    )


def _static(kx: Array, y: Array, activation: str, depth: int, steps: int, samples: int, chunk: int | None,
            response: str, output: str, factor: str, thr: float = 1e6, antithetic: bool = True) -> _Static:
    if response not in ("jvp", "stein"):
        raise ValueError(f"solver.response = {response!r}: must be 'jvp' or 'stein'")
    if output not in ("exact", "tangent"):
        raise ValueError(f"solver.output = {output!r}: must be 'exact' or 'tangent'")
    _activation(activation)
    M, P = kx.shape[0], y.shape[0]
    if chunk is None:
        chunk = _default_chunk(samples, steps * M, response, depth)
    return _Static(activation, int(depth), int(steps), int(M), int(P), int(chunk), response, output, factor, float(thr),
                   bool(antithetic))


def solve_monte_carlo(
    kx: Float[Array, "M M"],
    y: Float[Array, " P"],
    *,
    activation: str,
    depth: int,
    gamma0: float,
    sigma: float,
    sigma_w: float,
    lr: float,
    steps: int,
    key: Array,
    samples: int = 4000,
    iterations: int = 200,
    damping: float = 1.0,
    response_damping: float | None = None,
    response: str = "jvp",
    output: str = "exact",
    tol: float = 1e-8,
    y_test: Float[Array, " Q"] | None = None,
    stages: tuple[tuple[int, int], ...] | None = None,
    average: int = 1,
    chunk: int | None = None,
    factor: str = "cholesky",
    antithetic: bool = True,
    two_time: bool = True,
    jitter: float = 1e-10,
    rcond: float = 1e-3,
    divergence_threshold: float = 1e6,
) -> MeanFieldSolution:
    """Monte Carlo kernel DMFT of a depth-L μP network with activation φ (mean_field.md §3, §4, §7).

    ``kx``: K^x of all M = P + Q points (training first); ``y``: the P training targets; ``y_test``: optional
    targets of the Q test points (else ``test_loss`` is NaN). ``samples``: S single-site samples per layer;
    ``iterations``: maximum outer iterations per stage; ``damping`` / ``response_damping``: mixing θ of the
    correlations (Φ, G, f) and of the responses (A, B) (default: ``damping``); ``stages``: (samples, max
    iterations) pairs (default: S/4 samples, then S, when S ≥ 1024); ``average``: final iterates averaged;
    ``chunk``: samples per vmapped chunk (memory); ``factor``: ``"cholesky"`` (causal, default) or ``"eigh"``
    source factors; ``antithetic``: samples in pairs (u, r), (u, −r) (cancels the odd terms in w(0), e.g. the
    mean-zero B(0,0) = σ²⟨φ″(h)w(0)⟩, exactly); ``two_time=False``: Phi, G, A, B returned as None (the final
    pass then skips the O((TM)²)-memory two-time averages; Phi_diag and ntk are always filled; depth ≥ 2 still
    holds Φ^ℓ, G^ℓ, A^ℓ, B^ℓ of the hidden layers during the iteration); ``rcond``: pseudo-inverse cut of the
    Stein responses.
    ``mc_error`` is the batch-means
    standard error of the train loss at the converged order parameters (it omits the error that feeds back
    through Δ). ``converged``: no divergence and the final max|F(x) − x| ≤ ``tol`` + 1% of the largest
    ``mc_error`` (the iteration is deterministic given the samples; changes far below the Monte Carlo error are
    rounding, amplified by the sampled map).
    """
    require_x64("solve_monte_carlo")
    kx = jnp.asarray(kx, dtype=float)
    y = jnp.asarray(y, dtype=float)
    y_test = jnp.zeros(0) if y_test is None else jnp.asarray(y_test, dtype=float)
    if kx.shape[0] != y.shape[0] + y_test.shape[0] and y_test.shape[0] > 0:
        raise ValueError(f"kx is {kx.shape}: expected P + Q = {y.shape[0] + y_test.shape[0]} points")
    st = _static(
        kx, y, activation, depth, steps, samples, chunk, response, output, factor, divergence_threshold, antithetic
    )
    if stages is None:
        stages = ((samples // 4, iterations), (samples, iterations)) if samples >= 1024 else ((samples, iterations),)
    hp = _Hyper(kx, y, *(jnp.asarray(v, dtype=float) for v in (gamma0, sigma, sigma_w, lr)), key)
    return _solve(
        hp, y_test, st=st, samples=int(samples), iterations=int(iterations), stages=tuple(stages),
        damping=float(damping), response_damping=float(damping if response_damping is None else response_damping),
        tol=float(tol), average=int(average), jitter=float(jitter), rcond=float(rcond), two_time=bool(two_time),
    )


# ------------------------------------------------------------------------------------------------------------
# Level 2: spike Grams of the hidden matrices (spectra.md §6c, mean_field.md §8)
# ------------------------------------------------------------------------------------------------------------


class MonteCarloGrams(NamedTuple):
    """Spike Grams of the hidden matrices M^1..M^{L−1} (leading axis: layer ℓ − 1), per requested step.

    Spike index k = (s, μ), time-major, s < T, μ < P (training points), so the Grams are (TP, TP); at step t
    only the leading t·P block is kept (zeros elsewhere, which the eigen-thresholded reduction drops).
    ``grams`` fields: (L−1, n_steps, TP, TP); ``c``: C = diag(ηγ0Δ_μ(s)/P) masked likewise, (n_steps, TP, TP);
    ``steps``: the steps; ``boot``: bootstrap replicates (n_boot, L−1, n_steps, TP, TP) over sample blocks
    (None without bootstrap); ``consistency``: max|ΦᵀZ − (GᵀY)ᵀ| per layer and step (Monte Carlo size).
    Normalization (spectra.md §6c): M^ℓ(t) = M^ℓ(0) + N⁻¹GCΦᵀ, Grams divided by N.
    """

    grams: Grams
    c: Float[Array, "n_steps k k"]
    steps: Array
    boot: Grams | None
    consistency: Float[Array, "Lm1 n_steps"]


def monte_carlo_grams(
    kx: Float[Array, "M M"],
    y: Float[Array, " P"],
    solution: MeanFieldSolution,
    *,
    activation: str,
    depth: int,
    gamma0: float,
    sigma: float,
    sigma_w: float,
    lr: float,
    key: Array,
    samples: int = 4000,
    steps_at: Array | None = None,
    bootstrap: int = 0,
    chunk: int | None = None,
    factor: str = "cholesky",
    jitter: float = 1e-10,
) -> MonteCarloGrams:
    """Level-2 Grams of each hidden matrix from single-site samples at the order parameters of ``solution``.

    For M^ℓ (ℓ = 1..L−1): G_k = g^{ℓ+1}_μ(s), Φ_k = φ(h^ℓ_μ(s)), Y = χ^{ℓ+1} = u^{ℓ+1} + A^ℓg^{ℓ+1}, Z = ξ^ℓ =
    r^ℓ + B^ℓφ^ℓ (the bulk parts of h^{ℓ+1} and z^ℓ), and GᵀG/N = G^{ℓ+1}, ΦᵀΦ/N = Φ^ℓ, GᵀY/N = ⟨gχᵀ⟩, YᵀY/N =
    ⟨χχᵀ⟩, ΦᵀZ/N = ⟨φξᵀ⟩, ZᵀZ/N = ⟨ξξᵀ⟩, C = diag(ηγ0Δ_μ(s)/P) (spectra.md §6c). One Monte Carlo pass (all
    six from the same samples); ``bootstrap`` > 0 adds replicates resampling blocks of samples (the chunks).
    """
    if depth < 2:
        raise ValueError("monte_carlo_grams: hidden matrices exist for depth ≥ 2")
    kx = jnp.asarray(kx, dtype=float)
    y = jnp.asarray(y, dtype=float)
    T = solution.f.shape[0]
    st = _static(kx, y, activation, depth, T, samples, chunk, "stein", "exact", factor)
    steps_at = jnp.arange(T) if steps_at is None else jnp.asarray(steps_at, dtype=int)
    hp = _Hyper(kx, y, *(jnp.asarray(v, dtype=float) for v in (gamma0, sigma, sigma_w, lr)), key)
    return _grams(hp, solution, steps_at, st=st, samples=int(samples), bootstrap=int(bootstrap), jitter=jitter)


@partial(jax.jit, static_argnames=("st", "samples", "bootstrap", "jitter"))
def _grams(
    hp: _Hyper, sol: MeanFieldSolution, steps_at: Array, *, st: _Static, samples: int, bootstrap: int,
    jitter: float,
) -> MonteCarloGrams:
    T, M, L, P = st.T, st.M, st.depth, st.P
    tm = T * M
    flat = lambda a: a.reshape(a.shape[0], tm, tm)  # noqa: E731
    x = {
        "corr": {"Phi": flat(sol.Phi[1:L]), "G": flat(sol.G[1:L]), "f": sol.f},
        "resp": {"A": flat(sol.A[1:]), "B": flat(sol.B[:-1])},
    }
    sl, cm = _masks(T, M)
    factors = _factors(x, hp, st, jitter)

    def stat(src: dict, w: Array) -> tuple[dict, dict]:
        sums, _ = _chunk_stats(src, w, x, hp, st, final=True, grams=True)
        keep = {k: sums[k] for k in ("Phi", "G", "gy", "yy", "pz", "zz")}
        return keep, (keep if bootstrap else {})

    means, per = chunked_average(
        stat, hp.key, factors, samples=samples, chunk=st.chunk, antithetic=_antithetic(st)
    )
    train = (jnp.arange(M) < P)
    idx = jnp.nonzero(jnp.tile(train, T), size=T * P)[0]  # (s, μ < P), time-major
    sub = lambda a: a[..., idx[:, None], idx[None, :]]  # noqa: E731

    full = _layer_grams_sel(means, L, sub)
    delta = _delta(sol.f, hp.y, P, st.thr)[:, :P].reshape(-1)
    c = jnp.diag(hp.lr * hp.gamma0 * delta / P)
    mask = (jnp.arange(T * P)[None, :] < (steps_at[:, None] * P)).astype(float)  # (n_steps, TP)
    mm = mask[:, :, None] * mask[:, None, :]
    at_steps = lambda g: Grams(*(a[:, None] * mm[None] for a in g))  # noqa: E731
    grams = at_steps(full)
    consistency = jnp.max(jnp.abs(grams.PhitZ - jnp.swapaxes(grams.GtY, -1, -2)), axis=(-1, -2))
    boot = None
    if bootstrap:
        nb = per["Phi"][0].shape[0]
        kb = jax.random.fold_in(hp.key, 77_777)
        pick = jax.random.randint(kb, (bootstrap, nb), 0, nb)
        def rep(ix: Array) -> Grams:
            m = jax.tree_util.tree_map(lambda a: jnp.sum(a[ix], axis=0) / samples, per)
            return at_steps(_layer_grams_sel(m, L, sub))
        boot = jax.lax.map(rep, pick)
    return MonteCarloGrams(grams, c[None] * mm, steps_at, boot, consistency)


def _layer_grams_sel(m: dict, L: int, sub: Any) -> Grams:
    """Grams of M^ℓ, ℓ = 1..L−1, from per-layer averages (lists over layers 1..L; gy, yy over 2..L; pz, zz over
    1..L−1)."""
    return Grams(
        GtG=sub(jnp.stack([m["G"][ell] for ell in range(1, L)])),
        GtY=sub(jnp.stack(m["gy"])),
        YtY=sub(jnp.stack(m["yy"])),
        PhitPhi=sub(jnp.stack([m["Phi"][ell - 1] for ell in range(1, L)])),
        PhitZ=sub(jnp.stack(m["pz"])),
        ZtZ=sub(jnp.stack(m["zz"])),
    )
