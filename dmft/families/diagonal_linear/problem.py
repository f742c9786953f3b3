"""The problem definition of the diagonal linear network, shared by the theory and the twin.

One coordinate of the network (conventions.md §5, diagonal_linear.md §1), the teacher prior, the numbers of one
run (:class:`Params`, :func:`params_from_config`), the recorded β snapshots (:func:`snapshot_steps`) and the
status rule (:func:`loss_divergence`). With q̂ = √D XᵀΔ/P the error-weighted input and every parameter updated as
θ ← θ − η(D ∂L/∂θ + λθ) (λ = ``optim.weight_decay``):

    form "uv":  β = u v,           u(0) = a, v(0) = 0:     u ← (1 − ηλ)u + η v q̂,    v ← (1 − ηλ)v + η u q̂
    form "pm":  β = u₊² − u₋²,     u±(0) = a:              u± ← (1 − ηλ ± 2η q̂) u±

The factors are integrated directly, never the sinh map β = (a²/2) sinh(2Q) of gradient flow: no overflow at
small a, and the discrete step is exact (it breaks the conservation law u² − v² = a² by (1 − η²q̂²) per step).

A form is a :class:`Form` strategy (its initial state, β, GD step and the constants of its closed forms), looked
up once from ``model.form`` by :func:`form_of`; the functions taking ``form: str`` below are thin wrappers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtri
from jaxtyping import Array, ArrayLike, Float

import dmft._jax  # noqa: F401  (refuses known-bad JAX versions)

from ...config import Config
from ...results import divergence, record_steps

__all__ = [
    "Params", "Form", "FORMS", "PRIORS", "form_of", "init_state", "beta_of", "step", "lazy_rate", "sample_teacher",
    "params_from_config", "snapshot_steps", "loss_divergence",
]

PRIORS = ("gaussian", "sparse")

State = tuple[Array, Array]


class Params(NamedTuple):
    """The vmappable numbers of one run (a pytree of scalars: stack them to batch runs)."""

    lr: ArrayLike  # η
    init_scale: ArrayLike  # a
    alpha: ArrayLike  # α = P/D
    noise: ArrayLike  # σ_ε
    weight_decay: ArrayLike  # λ
    teacher_variance: ArrayLike  # ρ* = E β*²
    sparsity: ArrayLike  # fraction of nonzero teacher entries (sparse prior only)


# ------------------------------------------------------------------------------------------------------------
# Forms (strategies)
# ------------------------------------------------------------------------------------------------------------


def _init_uv(p: Params, shape: tuple[int, ...]) -> State:
    a = jnp.full(shape, p.init_scale, dtype=jnp.float64)
    return a, jnp.zeros_like(a)


def _init_pm(p: Params, shape: tuple[int, ...]) -> State:
    a = jnp.full(shape, p.init_scale, dtype=jnp.float64)
    return a, a


def _beta_uv(w: State) -> Array:
    return w[0] * w[1]


def _beta_pm(w: State) -> Array:
    return w[0] * w[0] - w[1] * w[1]


def _step_uv(w: State, qhat: Array, p: Params) -> State:
    decay = 1.0 - p.lr * p.weight_decay
    u, v = w
    return decay * u + p.lr * v * qhat, decay * v + p.lr * u * qhat


def _step_pm(w: State, qhat: Array, p: Params) -> State:
    decay = 1.0 - p.lr * p.weight_decay
    up, um = w
    return (decay + 2 * p.lr * qhat) * up, (decay - 2 * p.lr * qhat) * um


class Form(NamedTuple):
    """A parameterisation of β: its initial state, β, one GD step, and its gradient flow.

    Under a constant error-weighted input g, gradient flow from β(0) = 0 gives β(τ) = A a² sinh(B g τ) with
    (A, B) = ``(flow_amp, flow_rate)`` = (½, 2) for "uv" and (2, 4) for "pm", so dβ/dτ = m(β) q̂ with the local
    metric m(β) = B√(β² + (A a²)²); every form-dependent constant of the closed forms follows from (A, B).
    """

    name: str
    init: Callable[[Params, tuple[int, ...]], State]
    beta: Callable[[State], Array]
    step: Callable[[State, Array, Params], State]
    flow_amp: float
    flow_rate: float

    @property
    def lazy_factor(self) -> float:
        """η_lazy = lazy_factor·ηa² = m(0)η: the step of β as a → ∞ (1 for "uv", 8 for "pm")."""
        return self.flow_amp * self.flow_rate

    @property
    def init_factor(self) -> float:
        """The "uv" init scale with the same implicit bias is init_factor·a (1 for "uv", 2 for "pm")."""
        return (2 * self.flow_amp) ** 0.5

    def metric(self, b: ArrayLike, init_scale: ArrayLike) -> Array:
        """m(β): √(a⁴ + 4β²) ("uv"), 4√(β² + 4a⁴) ("pm")."""
        c = self.flow_amp * jnp.asarray(init_scale) ** 2
        return self.flow_rate * jnp.sqrt(b * b + c * c)

    def escape_time(self, g: ArrayLike, init_scale: ArrayLike, level: ArrayLike = 1.0) -> Array:
        """Gradient-flow time for |β| to reach ``level`` under a constant |g|: arcsinh(level/(A a²))/(B|g|)."""
        c = self.flow_amp * jnp.asarray(init_scale) ** 2
        return jnp.arcsinh(level / c) / (self.flow_rate * jnp.abs(g))


FORMS: dict[str, Form] = {
    "uv": Form("uv", _init_uv, _beta_uv, _step_uv, 0.5, 2.0),
    "pm": Form("pm", _init_pm, _beta_pm, _step_pm, 2.0, 4.0),
}


def form_of(form: str | Form) -> Form:
    """The :class:`Form` of ``model.form`` (a Form passes through)."""
    if isinstance(form, Form):
        return form
    try:
        return FORMS[form]
    except KeyError:
        raise ValueError(f"model.form = {form!r}: must be one of {', '.join(FORMS)}") from None


def init_state(p: Params, shape: tuple[int, ...], form: str | Form) -> State:
    """(u, v) = (a, 0) for "uv"; (u₊, u₋) = (a, a) for "pm"."""
    return form_of(form).init(p, shape)


def beta_of(w: State, form: str | Form) -> Array:
    """β = u v ("uv") or u₊² − u₋² ("pm")."""
    return form_of(form).beta(w)


def step(w: State, qhat: Array, p: Params, form: str | Form) -> State:
    """One full-batch GD step of the factors given the error-weighted input q̂ (module docstring)."""
    return form_of(form).step(w, qhat, p)


def lazy_rate(p: Params, form: str | Form) -> Array:
    """η_lazy, the step of β in the lazy limit β(t+1) = β(t) + η_lazy q̂: ηa² ("uv") or 8ηa² ("pm")."""
    return form_of(form).lazy_factor * p.lr * jnp.asarray(p.init_scale) ** 2


# ------------------------------------------------------------------------------------------------------------
# Teacher
# ------------------------------------------------------------------------------------------------------------


def sample_teacher(key: Array, n: int, p: Params, prior: str, stratified: bool = True) -> Float[Array, " n"]:
    """n teacher entries β*_a from the prior, E β*² = ρ*.

    * "gaussian": β* ~ N(0, ρ*);
    * "sparse": β* = B·G with B ~ Bernoulli(s), G ~ N(0, ρ*/s) (s = ``sparsity``).

    With ``stratified`` (the Monte Carlo samples of the theory) the Gaussian values are stratified quantiles
    Φ⁻¹((k + U_k)/n) in random order, exactly round(s·n) entries are nonzero, and the result is rescaled to
    second moment exactly ρ*. Without it (the finite-width twin) the entries are plain iid draws.
    """
    if prior not in PRIORS:
        raise ValueError(f"data.prior = {prior!r}: must be one of {', '.join(PRIORS)}")
    k_g, k_perm, k_u, k_mask = jax.random.split(key, 4)
    if stratified:
        u = (jax.random.permutation(k_perm, n).astype(jnp.float64) + jax.random.uniform(k_u, (n,))) / n
        g = ndtri(u)
        nonzero = (jax.random.permutation(k_mask, n).astype(jnp.float64) + 0.5) / n < p.sparsity
    else:
        g = jax.random.normal(k_g, (n,))
        nonzero = jax.random.uniform(k_mask, (n,)) < p.sparsity
    if prior == "sparse":
        g = jnp.where(nonzero, g, 0.0) / jnp.sqrt(p.sparsity)
    beta = jnp.sqrt(p.teacher_variance) * g
    if stratified:
        m2 = jnp.mean(beta * beta)
        beta = jnp.where(m2 > 0, beta * jnp.sqrt(p.teacher_variance / jnp.where(m2 > 0, m2, 1.0)), 0.0)
    return beta


# ------------------------------------------------------------------------------------------------------------
# Config → numbers, recorded steps, status
# ------------------------------------------------------------------------------------------------------------


def params_from_config(cfg: Config) -> Params:
    """The :class:`Params` of a config."""
    m, d, o = cfg.model, cfg.data, cfg.optim
    return Params(o.lr, m.init_scale, d.alpha, d.noise, o.weight_decay, d.teacher_variance, d.sparsity)


def snapshot_steps(cfg: Config) -> tuple[int, ...]:
    """Steps at which β is recorded, theory and twin: ``simulate.snapshots`` if given, else
    :func:`dmft.results.record_steps` with about 5 records (0, k, 2k, … and the last step)."""
    snaps = cfg.simulate.snapshots
    if snaps is not None:
        return tuple(sorted({int(s) for s in snaps}))
    return tuple(int(s) for s in record_steps(cfg.optim.steps, count=4))


def loss_divergence(train: ArrayLike, test: ArrayLike, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """``(diverged, divergence_step)`` along the last axis (:func:`dmft.results.divergence` of both losses; the
    earlier step wins; −1 where neither diverged)."""
    d_tr, k_tr = divergence(train, threshold)
    d_te, k_te = divergence(test, threshold)
    big = np.iinfo(np.int64).max
    k = np.minimum(np.where(d_tr, k_tr, big), np.where(d_te, k_te, big))
    diverged = d_tr | d_te
    return diverged, np.where(diverged, k, -1).astype(np.int64)
