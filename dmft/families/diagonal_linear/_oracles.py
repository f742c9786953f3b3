"""Closed-form and low-dimensional limits of the diagonal-linear DMFT (diagonal_linear.md §6–7).

* :func:`t1_test_loss`: the exact value after one step.
* :func:`lazy_curves`: a → ∞ at fixed η_lazy, a linear model over the Marchenko–Pastur spectrum.
* :func:`population_curve`: α → ∞, one deterministic scalar recursion per teacher value.
* :func:`fixed_point`: the long-time limit of gradient flow for α < 1, prox_{κΦ_a}(β* + τZ) with the
  hyperbolic-entropy potential Φ_a, interpolating minimum-ℓ2 (a → ∞) and ℓ1 (a → 0); the OLS limit for α > 1.
* :func:`late_time_rate`: the asymptotic decay rate of the training loss at that fixed point (Silverstein
  lower edge of X diag(m) Xᵀ/P with m the local metric at β_∞).
* :func:`escape_time`, :func:`small_init_curve`, :func:`small_init_limit`: the small-a search phase. Each
  coordinate feels the frozen field g = β* + ρ(0)/α, ρ(0) ~ N(0, α(ρ* + σ_ε²)), and leaves 0 after
  τ ≈ log(1/a)/|g| ("uv") or ½log(1/a)/|g| ("pm"): in τ/log(1/a) the first stage becomes a-independent.

Every function is pure JAX in the numbers of :class:`Params`, jitted (form, prior and sizes static) and
vmap-able.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

import dmft._jax  # noqa: F401  (refuses known-bad JAX versions)
from dmft.spectra.bulk import mp_expectation
from solvers.roots import chandrupatla

from .problem import Params, beta_of, form_of, init_state, lazy_rate, step

__all__ = [
    "t1_test_loss",
    "lazy_curves",
    "population_curve",
    "FixedPoint",
    "fixed_point",
    "late_time_rate",
    "escape_time",
    "small_init_curve",
    "small_init_limit",
    "effective_init",
]


# ------------------------------------------------------------------------------------------------------------
# Quadrature over the prior
# ------------------------------------------------------------------------------------------------------------


def _gauss_grid(n: int, half_width: float = 6.0) -> tuple[Array, Array]:
    """Uniform nodes on [−L, L] with normalised Gaussian weights (trapezoid rule: robust to kinks).

    L = 6 for the dynamical oracles: discrete GD is unstable for a coordinate with |β| ≳ 1/η, so a prior with
    Gaussian tails has, strictly, an infinite expected loss; the cut drops mass 2·10⁻⁹, invisible to S
    samples."""
    z = jnp.linspace(-half_width, half_width, n)
    w = jnp.exp(-0.5 * z * z)
    return z, w / jnp.sum(w)


def _prior_components(p: Params, prior: str) -> tuple[Array, Array]:
    """The prior as a mixture of centred Gaussians (variances, weights); variance 0 is a point mass."""
    if prior == "gaussian":
        return jnp.asarray([p.teacher_variance], dtype=jnp.float64), jnp.ones(1)
    s = jnp.asarray(p.sparsity, dtype=jnp.float64)
    return jnp.stack([jnp.zeros(()), p.teacher_variance / s]), jnp.stack([1.0 - s, s])


def _prior_nodes(p: Params, prior: str, n: int = 201) -> tuple[Float[Array, " k"], Float[Array, " k"]]:
    """Nodes and weights of the teacher prior (point mass at 0 kept as one node)."""
    var, pi = _prior_components(p, prior)
    z, w = _gauss_grid(n)
    vals = jnp.sqrt(var)[:, None] * z[None, :]
    wts = pi[:, None] * w[None, :]
    return vals.reshape(-1), wts.reshape(-1)


def effective_init(p: Params, form: str) -> Array:
    """The "uv" init scale with the same implicit bias: a ("uv"), 2a ("pm", whose potential is Φ_{2a}/2)."""
    return jnp.asarray(p.init_scale) * form_of(form).init_factor


# ------------------------------------------------------------------------------------------------------------
# Exact and lazy limits
# ------------------------------------------------------------------------------------------------------------


@partial(jax.jit, static_argnames=("form",))
def t1_test_loss(p: Params, form: str) -> Array:
    """Test loss after one step, exact in the proportional limit (diagonal_linear.md §6.2).

    β(1) = c q̂(0) with c = ηa²(1 − ηλ) ("uv"), 8ηa²(1 − ηλ) ("pm"), q̂(0) = ρ(0)/α + β*, so
    C_β̃(1,1) = (1 − c)²ρ* + c²(ρ* + σ_ε²)/α and test = ½(C_β̃(1,1) + σ_ε²).
    """
    c = lazy_rate(p, form) * (1.0 - p.lr * p.weight_decay)  # "uv": u(1)v(1) = (1 − ηλ)a · ηa q̂(0)
    rho, s2 = p.teacher_variance, jnp.asarray(p.noise) ** 2
    return 0.5 * ((1 - c) ** 2 * rho + c**2 * (rho + s2) / p.alpha + s2)


@partial(jax.jit, static_argnames=("form", "steps", "n_nodes"))
def lazy_curves(p: Params, form: str, steps: int, n_nodes: int | None = None) -> tuple[Array, Array]:
    """Test and train loss of the lazy limit a → ∞ at fixed η_lazy (:func:`lazy_rate`), t = 0..T−1.

    β(t+1) = β(t) + η_lazy q̂(t) is GD on a linear model. With λ Marchenko–Pastur (law of XᵀX/P, ratio 1/α)
    and μ the law of XXᵀ/P (ratio α, scale 1/α):

        C_β̃(t,t) = ρ* E(1 − η_lazyλ)^{2t} + (σ_ε²/α) E[(1 − (1 − η_lazyλ)^t)²/λ]
        train(t) = ½ E[(1 − η_lazyμ)^{2t}(αρ*μ + σ_ε²)]

    Weight decay is ignored (it vanishes in this limit only if λ = 0).
    """
    eta = lazy_rate(p, form)
    t = jnp.arange(steps, dtype=jnp.float64)
    n = n_nodes or max(256, steps + 8)
    rho, s2, alpha = p.teacher_variance, jnp.asarray(p.noise) ** 2, jnp.asarray(p.alpha)

    def f_test(lam: Array) -> Array:
        g = (1 - eta * lam[:, None]) ** t[None, :]
        safe = jnp.where(lam > 0, lam, 1.0)[:, None]
        noise_part = jnp.where(lam[:, None] > 0, (1 - g) ** 2 / safe, (eta * t[None, :]) ** 2 * lam[:, None])
        return rho * g * g + s2 / alpha * noise_part

    def f_train(mu: Array) -> Array:
        g = (1 - eta * mu[:, None]) ** (2 * t[None, :])
        return g * (alpha * rho * mu[:, None] + s2)

    test = 0.5 * (mp_expectation(f_test, 1 / alpha, n) + s2)
    train = 0.5 * mp_expectation(f_train, alpha, n, sigma=1 / jnp.sqrt(alpha))
    return test, train


@partial(jax.jit, static_argnames=("form", "prior", "steps", "n"))
def population_curve(p: Params, form: str, prior: str, steps: int, n: int = 401) -> Array:
    """Test loss for α → ∞: q̂ = β* − β for every coordinate (no noise, no memory), averaged over the prior."""
    b, w = _prior_nodes(p, prior, n)

    def body(wst: tuple[Array, Array], _: None) -> tuple[tuple[Array, Array], Array]:
        beta = beta_of(wst, form)
        err = beta - b
        return step(wst, -err, p, form), jnp.sum(w * err * err)

    _, c = jax.lax.scan(body, init_state(p, b.shape, form), None, length=steps)
    return 0.5 * (c + jnp.asarray(p.noise) ** 2)


# ------------------------------------------------------------------------------------------------------------
# Long-time fixed point (α < 1: minimum-Φ_a interpolator; α > 1: least squares)
# ------------------------------------------------------------------------------------------------------------


class FixedPoint(NamedTuple):
    """Limit β_∞ = prox_{κΦ_a}(β* + τZ) as a weighted grid: ``b`` (β_∞ values), ``weights``; and its error."""

    error: Array  # E(β_∞ − β*)² = C_β̃(∞)
    test_loss: Array  # ½(error + σ_ε²)
    tau: Array
    kappa: Array
    b: Float[Array, " k"]
    weights: Float[Array, " k"]
    converged: Array
    iterations: Array


def prox_hyperbolic(x: Array, kappa: Array, a: Array, max_iter: int = 100) -> Array:
    """prox_{κΦ_a}(x): the root b of (b − x)/κ + ½ arcsinh(2b/a²) = 0, Φ_a′(b) = ½ arcsinh(2b/a²).

    Solved for w = arcsinh(2|b|/a²) ≥ 0: g(w) = (a²/2)sinh w + κw/2 − |x| is increasing and convex, so Newton
    from the right (w₀ = min(arcsinh(2|x|/a²), 2|x|/κ), where g ≥ 0) decreases monotonically to the root; it
    stops when every step is below 1e-15(1 + w). No overflow: w ≤ arcsinh(2|x|/a²).
    """
    ax, a2 = jnp.abs(x), a * a
    w0 = jnp.minimum(jnp.arcsinh(2 * ax / a2), 2 * ax / kappa)

    def newton(state: tuple[Array, Array, Array]) -> tuple[Array, Array, Array]:
        w, it, _ = state
        g = 0.5 * a2 * jnp.sinh(w) + 0.5 * kappa * w - ax
        dg = 0.5 * a2 * jnp.cosh(w) + 0.5 * kappa
        w_new = jnp.maximum(w - g / dg, 0.0)
        return w_new, it + 1, jnp.max(jnp.abs(w_new - w) / (1 + w)) < 1e-15

    w, _, _ = jax.lax.while_loop(lambda s: (~s[2]) & (s[1] < max_iter), newton, (w0, 0, jnp.asarray(False)))
    return jnp.sign(x) * 0.5 * a2 * jnp.sinh(w)


def _fp_grid(p: Params, prior: str, tau: Array, n: int) -> tuple[Array, Array, Array, Array]:
    """x = β* + τZ on a grid per prior component, with weights and E[β*|x], E[β*²|x] per node."""
    var, pi = _prior_components(p, prior)
    z, w = _gauss_grid(n, 12.0)
    tot = var[:, None] + tau**2
    x = jnp.sqrt(tot) * z[None, :]
    gain = var[:, None] / tot
    m1 = gain * x
    m2 = m1 * m1 + gain * tau**2
    return x.reshape(-1), (pi[:, None] * w[None, :]).reshape(-1), m1.reshape(-1), m2.reshape(-1)


@partial(jax.jit, static_argnames=("form", "prior", "n", "tol"))
def fixed_point(p: Params, form: str, prior: str, n: int = 4001, tol: float = 1e-14) -> FixedPoint:
    """Long-time limit of gradient flow from β(0) = 0 in the proportional limit (diagonal_linear.md §6.5).

    α < 1: gradient flow converges to argmin Φ_a(β) s.t. Xβ/√D = y (Woodworth et al. 2020), whose
    high-dimensional limit (CGMT/AMP form) is β_∞ = prox_{κΦ_a}(β* + τZ) with

        τ² = (σ_ε² + E(β_∞ − β*)²)/α,      E[1/(1 + κΦ_a″(β_∞))] = α.

    For each τ, κ is found by bracketed root finding in log κ, and τ² by bracketed root finding of
    log(σ_ε² + E(β_∞ − β*)²) = log(ατ²) in log τ² (τ = 0, exact recovery, when there is no root). "pm" uses
    the potential of 2a. α > 1: the least-squares solution, β_∞ = β* + τZ with τ² = σ_ε²/(α − 1). α = 1 is not
    covered (the error is infinite with noise). Weight decay is not part of this limit (pass λ = 0).
    """
    a = effective_init(p, form)
    alpha, s2 = jnp.asarray(p.alpha, dtype=jnp.float64), jnp.asarray(p.noise, dtype=jnp.float64) ** 2

    def solve_kappa(tau: Array) -> tuple[Array, Array, Array]:
        x, w, m1, m2 = _fp_grid(p, prior, tau, n)

        def dof_gap(log_k: Array) -> Array:
            k = jnp.exp(log_k)
            b = prox_hyperbolic(x, k, a)
            return jnp.sum(w / (1 + k / jnp.sqrt(a**4 + 4 * b * b))) - alpha

        lk = chandrupatla(dof_gap, -60.0, 60.0, rtol=1e-13).x
        b = prox_hyperbolic(x, jnp.exp(lk), a)
        err = jnp.sum(w * (b * b - 2 * b * m1 + m2))
        return err, jnp.exp(lk), b

    def gap(log_tau2: Array) -> Array:
        tau2 = jnp.exp(log_tau2)
        err, _, _ = solve_kappa(jnp.sqrt(tau2))
        return jnp.log(s2 + err) - jnp.log(alpha * tau2)

    var, pi = _prior_components(p, prior)
    hi = jnp.log(10 * (s2 + jnp.sum(var * pi)) / alpha)
    lo = jnp.log(jnp.asarray(tol))
    root = chandrupatla(gap, lo, hi, rtol=1e-13)
    # No sign change at the lower end: τ → 0, exact recovery (noiseless and below the ℓ1/Φ_a phase
    # transition).
    recovered = gap(lo) <= 0
    tau = jnp.where(recovered, 0.0, jnp.sqrt(jnp.exp(root.x)))
    err, kappa, b = solve_kappa(tau)
    _, w, _, _ = _fp_grid(p, prior, tau, n)
    converged = recovered | root.converged
    interp = FixedPoint(err, 0.5 * (err + s2), tau, kappa, b, w, converged, root.iterations)

    # α > 1: least squares.
    tau_ls = jnp.sqrt(s2 / jnp.where(alpha > 1, alpha - 1, 1.0))
    x, w_ls, _, _ = _fp_grid(p, prior, tau_ls, n)
    err_ls = tau_ls**2
    ls = FixedPoint(
        err_ls, 0.5 * (err_ls + s2), tau_ls, jnp.zeros(()), x, w_ls, jnp.asarray(True), jnp.asarray(0)
    )
    # x here is β* + τZ, which is β_∞ itself for least squares.
    return jax.tree_util.tree_map(lambda u, v: jnp.where(alpha > 1, v, u), interp, ls)


def local_metric(b: Array, p: Params, form: str) -> Array:
    """m(β) with dβ/dτ = m q̂ in gradient flow: √(a⁴ + 4β²) ("uv"), 4√(β² + 4a⁴) ("pm")."""
    return form_of(form).metric(b, p.init_scale)


@partial(jax.jit, static_argnames=("form",))
def late_time_rate(fp: FixedPoint, p: Params, form: str) -> Array:
    """λ_min: near β_∞ the residual obeys dΔ/dτ = −KΔ, K = X diag(m) Xᵀ/P, so train ∝ e^{−2λ_min τ}.

    λ_min is the lower edge of the limiting spectrum of K (Silverstein's equation with weights m(β_∞)):
    α < 1: θ > 0 solves E[(m/(m + θ))²] = α and λ_min = E[mθ/(α(m + θ))] − θ;
    α > 1 (edge of the nonzero part): θ ∈ (0, min m) solves E[(m/(m − θ))²] = α, λ_min = θ − E[mθ/(α(m − θ))].
    In discrete time the loss decays per step by (1 − ηλ_min)².
    """
    m = local_metric(fp.b, p, form)
    w = fp.weights
    alpha = jnp.asarray(p.alpha, dtype=jnp.float64)
    sgn = jnp.where(alpha < 1, 1.0, -1.0)

    def gap(log_th: Array) -> Array:
        th = jnp.exp(log_th)
        return jnp.log(jnp.sum(w * (m / (m + sgn * th)) ** 2)) - jnp.log(alpha)

    m_min = jnp.min(jnp.where(w > 0, m, jnp.inf))
    hi = jnp.where(alpha < 1, jnp.log(1e12 * jnp.max(m)), jnp.log(m_min * (1 - 1e-12)))
    th = jnp.exp(chandrupatla(gap, jnp.log(1e-14 * m_min), hi, rtol=1e-13).x)
    return sgn * (jnp.sum(w * m * th / (alpha * (m + sgn * th))) - th)


# ------------------------------------------------------------------------------------------------------------
# Small initialisation: the search phase
# ------------------------------------------------------------------------------------------------------------


@partial(jax.jit, static_argnames=("form",))
def escape_time(g: ArrayLike, p: Params, form: str, level: ArrayLike = 1.0) -> Array:
    """Gradient-flow time τ for a coordinate under a constant error-weighted input g to reach |β| = ``level``.

    "uv": β = (a²/2) sinh(2gτ) gives τ = arcsinh(2·level/a²)/(2|g|) ≈ log(1/a)/|g| (plus O(1)/|g|);
    "pm": β = 2a² sinh(4gτ) gives τ = arcsinh(level/(2a²))/(4|g|) ≈ ½ log(1/a)/|g|.
    """
    return form_of(form).escape_time(jnp.asarray(g, dtype=jnp.float64), p.init_scale, level)


def _field_nodes(p: Params, prior: str, n_b: int, n_g: int) -> tuple[Array, Array, Array]:
    """(β*, g, weight): the search-phase frozen field g = β* + ρ(0)/α, ρ(0) ~ N(0, α(ρ* + σ_ε²))."""
    b, wb = _prior_nodes(p, prior, n_b)
    z, wz = _gauss_grid(n_g)
    sd = jnp.sqrt((p.teacher_variance + jnp.asarray(p.noise) ** 2) / p.alpha)
    g = b[:, None] + sd * z[None, :]
    return (
        jnp.broadcast_to(b[:, None], g.shape).reshape(-1),
        g.reshape(-1),
        (wb[:, None] * wz[None, :]).reshape(-1),
    )


@partial(jax.jit, static_argnames=("form", "prior", "steps", "n_b", "n_g", "substeps"))
def small_init_curve(
    p: Params, form: str, prior: str, steps: int, n_b: int = 201, n_g: int = 401, substeps: int = 8
) -> Array:
    """Test loss of the frozen-field model: each coordinate runs GD on ½(β − g)², g = β* + ρ(0)/α.

    This is the DMFT with the collective terms frozen at their t = 0 values (H = I, ρ(t) = ρ(0)), exact while
    the escaped coordinates carry a negligible part of the loss: at small a it gives the end of the first
    plateau (afterwards every coordinate settles at its noisy target g and the curve rises). Each step is
    integrated in ``substeps`` steps of η/substeps, so that the rare coordinates with |g| ≳ 1/η (far tails of
    the quadrature) stay
    stable; for the coordinates that matter this is the same dynamics up to O(η).
    """
    b, g, w = _field_nodes(p, prior, n_b, n_g)
    p_sub = p._replace(lr=p.lr / substeps)

    def sub(wst: tuple[Array, Array], _: None) -> tuple[tuple[Array, Array], None]:
        return step(wst, g - beta_of(wst, form), p_sub, form), None

    def body(wst: tuple[Array, Array], _: None) -> tuple[tuple[Array, Array], Array]:
        err = beta_of(wst, form) - b
        wst, _ = jax.lax.scan(sub, wst, None, length=substeps)
        return wst, jnp.sum(w * err * err)

    _, c = jax.lax.scan(body, init_state(p, b.shape, form), None, length=steps)
    return 0.5 * (c + jnp.asarray(p.noise) ** 2)


@partial(jax.jit, static_argnames=("form", "prior", "n_b", "n_g"))
def small_init_limit(s: ArrayLike, p: Params, form: str, prior: str, n_b: int = 201, n_g: int = 401) -> Array:
    """The a → 0 limit of :func:`small_init_curve` in rescaled time s = τ/log(1/a) (weight decay 0).

    A coordinate sits at 0 until s|g| = 1 ("uv"; ½ for "pm") and then at g, so
    test(s) = ½(σ_ε² + E[β*² 1{c|g|s < 1} + (g − β*)² 1{c|g|s ≥ 1}]) with c = 1 ("uv"), 2 ("pm").
    """
    b, g, w = _field_nodes(p, prior, n_b, n_g)
    c = 0.5 * form_of(form).flow_rate
    s = jnp.asarray(s, dtype=jnp.float64)[..., None]
    out = c * jnp.abs(g) * s >= 1
    e = jnp.where(out, (g - b) ** 2, b * b)
    return 0.5 * (jnp.sum(w * e, axis=-1) + jnp.asarray(p.noise) ** 2)
