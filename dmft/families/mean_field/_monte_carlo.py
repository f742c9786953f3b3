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
iterates (:func:`solvers.single_site.damped_iteration`).

Sources are sampled by a time-major Cholesky factor by default, which keeps the sampled map causal: with mixing 1
the iteration then reaches its fixed point exactly.

Modules: the shared engine (sources, scan, operators, response strategies) is :mod:`._mc_engine`; level 2 (spike
Grams of the hidden matrices) is :mod:`._monte_carlo_grams`, re-exported here.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from solvers.single_site import chunked_average, damped_iteration

from ..._jax import require_x64
from ._kernels import initial_kernels
from ._mc_engine import (
    _antithetic,
    _chunk_stats,
    _delta,
    _factors,
    _Hyper,
    _loss_ok,
    _masks,
    _ntk,
    _Static,
    _static,
    _tile,
    response_of,
)
from ._monte_carlo_grams import MC_GRAM_THRESHOLD, MonteCarloGrams, monte_carlo_grams
from ._types import MeanFieldSolution

__all__ = ["solve_monte_carlo", "monte_carlo_grams", "MonteCarloGrams", "MC_GRAM_THRESHOLD", "OUTPUT_RULES"]


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


def _exact_output(means, per, counts, k, kb, x, hp, st):  # noqa: ANN001, ANN202
    """f from the exact average, re-marched with the tangent predictor; and its batch values."""
    f = _corrected_f(means["f"] / hp.gamma0, k, x["corr"]["f"], hp.y, hp.lr, st.P, st.thr)
    f_mc_b = per["f"] / (counts[:, None, None] * hp.gamma0)
    f_batch = jax.vmap(_corrected_f, in_axes=(0, 0, None, None, None, None, None))(
        f_mc_b, kb, x["corr"]["f"], hp.y, hp.lr, st.P, st.thr
    )
    return f, f_batch


def _tangent_output(means, per, counts, k, kb, x, hp, st):  # noqa: ANN001, ANN202
    """f from the tangent-kernel update; and its batch values."""
    f = _tangent_f(k, hp.y, hp.lr, st.P, st.thr)
    return f, jax.vmap(_tangent_f, in_axes=(0, None, None, None, None))(kb, hp.y, hp.lr, st.P, st.thr)


#: ``solver.output`` → how the network output is formed from one Monte Carlo pass (strategy, chosen once).
OUTPUT_RULES = {"exact": _exact_output, "tangent": _tangent_output}


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
    f, f_batch = OUTPUT_RULES[st.output](means, per, counts, k, kb, x, hp, st)
    phi_new = jnp.stack(means["Phi"][: L - 1]) if L > 1 else x["corr"]["Phi"]
    g_new = jnp.stack(means["G"][-(L - 1):]) if L > 1 else x["corr"]["G"]
    a_new, b_new = x["resp"]["A"], x["resp"]["B"]
    if L > 1:
        a_raw, b_raw = jnp.stack(means["A"]), jnp.stack(means["B"])
        resp = response_of(st.response)
        g_src = x["corr"]["G"]  # G^{ℓ+1}, ℓ = 1..L−1: the covariances the sources were drawn from
        phi_src = x["corr"]["Phi"]  # Φ^{ℓ−1}, ℓ = 2..L
        a_raw = jnp.stack([resp.finish(a_raw[i], g_src[i], rcond) for i in range(L - 1)])
        b_raw = jnp.stack([resp.finish(b_raw[i], phi_src[i], rcond) for i in range(L - 1)])
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
