"""The Monte Carlo single-site engine of the mean-field DMFT, shared by level 1 (:mod:`._monte_carlo`) and level 2
(:mod:`._monte_carlo_grams`): static settings, one neuron's causal scan, the operators built from the order
parameters, source factors, the response strategies and the per-chunk averages (mean_field.md §3).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from solvers.single_site import mean_jacobian, pinv_psd, psd_factor

from .problem import activation as _activation

OUTPUTS = ("exact", "tangent")


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


# ------------------------------------------------------------------------------------------------------------
# Responses (strategies, chosen once per solve from solver.response)
# ------------------------------------------------------------------------------------------------------------


class Response(NamedTuple):
    """How the responses A^ℓ = σ²⟨∂φ(h^ℓ)/∂r^ℓ⟩ and B^{ℓ−1} = σ²⟨∂g^ℓ/∂u^ℓ⟩ are estimated.

    ``average(fn, src, other, out, w, s2)``: the chunk sum of one response, where ``fn(src, other)`` is the
    per-sample map (flattened output of the scan as a function of the flattened source ``src``), ``out`` its
    value on the chunk and ``w`` the sample weights; ``finish(raw, cov, rcond)``: the response from the averaged
    sums and the covariance the source was drawn from; ``chunk_limit``: forward-mode Jacobians need chunk·(TM)²
    memory.
    """

    name: str
    average: Callable[..., Array]
    finish: Callable[[Array, Array, float], Array]
    chunk_limit: bool


def _jvp_average(fn, src, other, out, w, s2):  # noqa: ANN001, ANN202
    return s2 * mean_jacobian(fn, src, w, other)


def _stein_average(fn, src, other, out, w, s2):  # noqa: ANN001, ANN202
    return (out * w[:, None]).T @ src


RESPONSES: dict[str, Response] = {
    "jvp": Response("jvp", _jvp_average, lambda raw, cov, rcond: raw, True),
    "stein": Response("stein", _stein_average, lambda raw, cov, rcond: raw @ pinv_psd(cov, rcond=rcond), False),
}


def response_of(name: str) -> Response:
    """The :class:`Response` of ``solver.response``."""
    try:
        return RESPONSES[name]
    except KeyError:
        raise ValueError(f"solver.response = {name!r}: must be 'jvp' or 'stein'") from None



def _default_chunk(samples: int, tm: int, response: str, depth: int) -> int:
    """Samples per chunk: at least 8 chunks for batch means; jvp Jacobians (chunk·(TM)²) kept ≲ 50 MB."""
    c = min(256, max(1, -(-samples // 8)))
    if response_of(response).chunk_limit and depth >= 2:
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
    resp = response_of(st.response)
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
            fa = lambda rf, uu: path(uu, rf.reshape(T, M))[1].reshape(-1)  # noqa: E731
            sums["A"].append(resp.average(fa, r.reshape(n, tm), u, pf, w, s2))
        if ell > 1:  # B^{ℓ−1} = σ²⟨∂g^ℓ/∂u^ℓ⟩
            fb = lambda uf, rr: path(uf.reshape(T, M), rr)[3].reshape(-1)  # noqa: E731
            sums["B"].append(resp.average(fb, u.reshape(n, tm), r, gf, w, s2))
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


def _static(kx: Array, y: Array, activation: str, depth: int, steps: int, samples: int, chunk: int | None,
            response: str, output: str, factor: str, thr: float = 1e6, antithetic: bool = True) -> _Static:
    response_of(response)
    if output not in OUTPUTS:
        raise ValueError(f"solver.output = {output!r}: must be 'exact' or 'tangent'")
    _activation(activation)
    M, P = kx.shape[0], y.shape[0]
    if chunk is None:
        chunk = _default_chunk(samples, steps * M, response, depth)
    return _Static(activation, int(depth), int(steps), int(M), int(P), int(chunk), response, output, factor, float(thr),
                   bool(antithetic))
