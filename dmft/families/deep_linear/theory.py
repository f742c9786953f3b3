r"""Level-1 DMFT of deep linear networks in the proportional limit (shared/theory/deep_linear.md §3–§7).

The network (conventions.md §3) has weights W^0 (N×D), W^1..W^{L-1} (N×N) and a readout w; it is trained by
full-batch GD (or one-pass SGD) on the mean squared loss with rate ηγ0²N. As D → ∞ at fixed α = P/D, ν = N/D the
dynamics close on T×T correlation and response functions, all linear in Gaussian sources, so no sampling is
needed. With the spike operators

    P_ℓ = A_{ℓ-1} + ηγ0 SL∘C_in^ℓ,   Q_ℓ = B_{ℓ+1} + ηγ0 SL∘C_g^{ℓ+1} (Q_L = ηγ0 SL),   P_0 = B_1/(γ0ν) + η SL∘C_g^1

and 𝕄_ℓ = (I − Q_ℓP_ℓ)⁻¹, 𝔽_ℓ = (I − P_ℓQ_ℓ)⁻¹, J = (I + P_0H)⁻¹, H = (I + R)⁻¹, the closed system is

    C_g^ℓ = 𝕄_ℓ(Σ_r^ℓ + σ²Q_ℓC_in^ℓQ_ℓᵀ)𝕄_ℓᵀ,       C_e^ℓ = 𝔽_ℓ(σ²C_in^ℓ + P_ℓΣ_r^ℓP_ℓᵀ)𝔽_ℓᵀ
    A_ℓ = σ²𝔽_ℓP_ℓ,   B_ℓ = σ²c_ℓ𝕄_ℓQ_ℓ,   R = JP_0/α,   A_0 = −σ²HJ/(γ0ν)
    C_β̃ = J[σ²C_g^1/(γ0²ν) + P_0C_ΔP_0ᵀ/α + ρ*𝟙𝟙ᵀ]Jᵀ,     C_Δ = H(σ_ε²𝟙𝟙ᵀ + C_β̃)Hᵀ
    C_q = J′C_ΔJ′ᵀ/α + σ²(HJ)C_g^1(HJ)ᵀ/(γ0²ν) + ρ*(HJ𝟙)(HJ𝟙)ᵀ,   J′ = I − HJP_0

with test(t) = ½(C_β̃(t,t) + σ_ε²) and train(t) = ½C_Δ(t,t).

**Solver.** Every response is causal, so the system is solved by marching forward in time and computing only
the new row t of every object, in the order of the within-step chain of GD (backward pass L→1, then β, Δ, q̂,
then the forward pass 1→L). Each row costs O(T²) (row-vector × matrix products and forward substitution), so a
run costs O(L T³) time and O(L T²) memory. The global self-consistency of the result is checked at the end with
random probe vectors (O(L T²)) and reported as ``residual``.

**State.** Typed and indexed by integer layers: :class:`LayerState` (the objects of N-space ℓ), :class:`DataState`
(D- and P-space), :class:`MarchState`; one row is :func:`_backward_layer` (ℓ = L..1), :func:`_data_spaces`,
:func:`_forward_layer` (ℓ = 1..L) and the writes. Shallow networks unroll the layers (one buffer per field and
layer, fastest rows); from depth :data:`LAYER_SCAN_DEPTH` the layers run in a ``lax.scan`` over a stacked state
(compile time independent of depth). :func:`solve` returns a :class:`DeepLinearSolution` whose names are those of
the Dataset.
"""

from __future__ import annotations

import warnings
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jaxtyping import Array, Float

from ..._jax import require_x64
from ...config import Config
from ...results import NOT_DIVERGED, finalize, mask_after, status_variables
from ...scaling import effective_gamma0, parameterization_code
from .problem import LONG_NAMES, lazy_kappa, spectrum_steps

__all__ = [
    "DeepLinearParams",
    "DeepLinearSolution",
    "LayerState",
    "DataState",
    "MarchState",
    "Level2",
    "params_from_config",
    "solve",
    "solve_config",
    "solve_batch",
    "lazy_kappa",
    "lazy_test_loss",
    "initial_losses",
    "first_step_test_loss",
    "to_dataset",
]


class DeepLinearParams(NamedTuple):
    """Scalar hyperparameters of the proportional deep linear DMFT (a pytree: vmap over any of them).

    ``gamma0`` is the *effective* γ0 (after μP/NTK scaling, see :mod:`dmft.scaling`). ``alpha`` is α = P/D for
    full-batch GD and α_B = B/D for one-pass SGD.
    """

    lr: Float[Array, ""]
    gamma0: Float[Array, ""]
    width_ratio: Float[Array, ""]
    sigma: Float[Array, ""]
    sigma_readout: Float[Array, ""]
    alpha: Float[Array, ""]
    noise: Float[Array, ""]
    teacher_variance: Float[Array, ""]


def params_from_config(cfg: Config) -> DeepLinearParams:
    """Map config keys to solver parameters, applying the μP/NTK rule once (dmft.scaling)."""
    m, d, o = cfg.model, cfg.data, cfg.optim
    g = effective_gamma0(m.gamma0, m.width_ratio, parameterization_code(m.parameterization))
    alpha = d.alpha if o.batch_ratio is None else o.batch_ratio
    vals = (o.lr, g, m.width_ratio, m.sigma, m.sigma_readout, alpha, d.noise, d.teacher_variance)
    return DeepLinearParams(*(jnp.asarray(v, dtype=jnp.float64) for v in vals))


# --------------------------------------------------------------------------------------------------------------
# Closed forms
# --------------------------------------------------------------------------------------------------------------


def initial_losses(p: DeepLinearParams, depth: int) -> Float[Array, ""]:
    """test(0) = train(0) = ½(ρ* + σ^{2L}σ_w²/(γ0²ν) + σ_ε²) (deep_linear.md §8.1)."""
    init_var = p.sigma ** (2 * depth) * p.sigma_readout**2 / (p.gamma0**2 * p.width_ratio)
    return 0.5 * (p.teacher_variance + init_var + p.noise**2)


def lazy_test_loss(
    steps: int,
    lr: float,
    depth: int,
    sigma: float,
    sigma_readout: float,
    gamma0_tilde: float,
    alpha: float,
    noise: float = 0.0,
    teacher_variance: float = 1.0,
    n_nodes: int = 400,
) -> np.ndarray:
    r"""Test loss of the NTK-scaled network as ν → ∞ (kernel regression by GD; deep_linear.md §7.3).

        C_β̃(t,t) = C_0 E_λ[(1 − ηκλ)^{2t}] + (σ_ε²/α) E_λ[(1 − (1 − ηκλ)^t)²/λ],   C_0 = ρ* + σ^{2L}σ_w²/γ̃0²

    with λ ~ Marchenko–Pastur law of XᵀX/P (ratio y = 1/α, atom 1 − α at 0 when α < 1), evaluated by the angle
    rule of :func:`dmft.spectra.bulk.mp_expectation`: λ(θ) = 1 + y + 2√y cos θ and
    E f = f(0) + (2/π)∫₀^π [f(λ) − f(0)] sin²θ/λ dθ (atom included), with Gauss–Chebyshev nodes θ_i = iπ/(n+1).
    Both integrands, [(1 − ηκλ)^{2t} − 1]/λ and (1 − (1 − ηκλ)^t)²/λ², are polynomials in λ, so the rule is exact
    for every α once n_nodes > 2t — also at α = 1, where the density diverges as λ^{−1/2} at λ = 0 (a quadrature
    in λ with the 1/λ of the density in its weights erred there by 2e-3 at 400 nodes, converging as 1/n).
    """
    kappa = lazy_kappa(depth, sigma, sigma_readout)
    y = 1.0 / alpha
    theta = np.arange(1, n_nodes + 1) * np.pi / (n_nodes + 1)
    lam = 1 + y + 2 * np.sqrt(y) * np.cos(theta)
    weights = (2.0 / (n_nodes + 1)) * np.sin(theta) ** 2 / lam  # E f = f(0) + Σ_i w_i [f(λ_i) − f(0)]
    c0 = teacher_variance + sigma ** (2 * depth) * sigma_readout**2 / gamma0_tilde**2
    t = np.arange(steps)[:, None]
    decay = (1 - lr * kappa * lam[None, :]) ** t
    signal = c0 * (1.0 + (decay**2 - 1.0) @ weights)  # f(0) = 1
    noise_part = noise**2 / alpha * (((1 - decay) ** 2 / lam[None, :]) @ weights)  # f(0) = 0
    return 0.5 * (signal + noise_part + noise**2)


def first_step_test_loss(p: DeepLinearParams) -> Float[Array, ""]:
    r"""Exact test loss after one GD step of a depth-1 network (L = 1) as D → ∞, by free probability.

    One step gives β̃(1) = β̃(0) + ηK′q̂(0) with K′ = aI + B, a = σ_w²(1 − ησ²/ν), B = M⁰ᵀM⁰/ν (MP law, ratio
    1/ν, scale σ²), q̂ = Zᵀ(ε − Zβ̃(0))/α and Cov β̃(0) = cB + ρ*I, c = σ_w²/(γ0²ν). With A = ZᵀZ free from B
    (τ(A) = α, τ(A²) = α² + α) and u = η/α:

        E|β̃(1)|²/D = ρ*[1 − 2uα τ(K′) + u²τ(A²)τ(K′²)]
                    + c[τ(B) − 2uα τ(K′B) + u²(τ(A²)τ(K′²)τ(B) + α²τ(K′²B) − α²τ(K′²)τ(B))] + (η²σ_ε²/α)τ(K′²)

    This is derived independently of the DMFT and is used to check it (tests/test_deep_linear_theory.py).
    """
    lr, g0, nu, sig, sw, alpha, noise, rho = p
    c = sw**2 / (g0**2 * nu)
    a = sw**2 * (1 - lr * sig**2 / nu)
    u = lr / alpha
    t_b, t_b2, t_b3 = sig**2, sig**4 * (1 + 1 / nu), sig**6 * (1 + 3 / nu + 1 / nu**2)
    t_k2 = a * a + 2 * a * t_b + t_b2
    t_kb = a * t_b + t_b2
    t_k2b = a * a * t_b + 2 * a * t_b2 + t_b3
    t_a2 = alpha**2 + alpha
    err = rho * (1 - 2 * u * alpha * (a + t_b) + u * u * t_a2 * t_k2)
    err += c * (t_b - 2 * u * alpha * t_kb + u * u * (t_a2 * t_k2 * t_b + alpha**2 * t_k2b - alpha**2 * t_k2 * t_b))
    err += lr**2 * noise**2 / alpha * t_k2
    return 0.5 * (err + noise**2)


# --------------------------------------------------------------------------------------------------------------
# Typed state of the march
# --------------------------------------------------------------------------------------------------------------


class LayerState(NamedTuple):
    """The T×T objects of N-space ℓ (1 ≤ ℓ ≤ L), deep_linear.md §4–§5. During the march only rows < t are filled;
    a new row of each field is computed by :func:`_backward_layer` / :func:`_forward_layer`.

    Attributes:
        P: forward spike operator P_ℓ = A_{ℓ−1} + ηγ0 SL∘C_in^ℓ (lower triangular; C_in^1 = C_q, else C_e^{ℓ−1}).
        Q: backward spike operator Q_ℓ = B_{ℓ+1} + ηγ0 SL∘C_g^{ℓ+1}, Q_L = ηγ0 SL (strictly lower triangular).
        M: backward resolvent 𝕄_ℓ = (I − Q_ℓP_ℓ)⁻¹ (unit lower triangular).
        F: forward resolvent 𝔽_ℓ = (I − P_ℓQ_ℓ)⁻¹ (unit lower triangular).
        C_g: backward-field correlation C_g^ℓ = g^ℓ·g^ℓ/N (symmetric).
        C_e: forward-field correlation C_e^ℓ = e^ℓ·e^ℓ/N (symmetric).
        A: forward response A_ℓ = σ²𝔽_ℓP_ℓ (ℓ ≤ L − 1; zero for ℓ = L).
        B: backward response B_ℓ = σ²c_ℓ𝕄_ℓQ_ℓ (c_1 = ν, else 1; strictly lower triangular).
        Sigma_g: covariance of the driving term of g^ℓ, Σ_r^ℓ + σ²Q_ℓC_in^ℓQ_ℓᵀ, so that C_g^ℓ = 𝕄_ℓΣ_g𝕄_ℓᵀ.
        Sigma_e: covariance of the driving term of e^ℓ, σ²C_in^ℓ + P_ℓΣ_r^ℓP_ℓᵀ, so that C_e^ℓ = 𝔽_ℓΣ_e𝔽_ℓᵀ.
    """

    P: Array
    Q: Array
    M: Array
    F: Array
    C_g: Array
    C_e: Array
    A: Array
    B: Array
    Sigma_g: Array
    Sigma_e: Array

    symmetric = frozenset({"C_g", "C_e", "Sigma_g", "Sigma_e"})  # not a field: written as row and column


class DataState(NamedTuple):
    """The T×T objects of the D-space (input coordinates) and P-space (training samples), deep_linear.md §5.

    Attributes:
        P0: D-space spike operator P_0 = B_1/(γ0ν) + η SL∘C_g^1 (strictly lower triangular).
        R: data response R = JP_0/α = ⟨∂β/∂ρ⟩ (strictly lower triangular; zero for one-pass SGD).
        H: residual resolvent H = (I + R)⁻¹ (unit lower triangular; I for one-pass SGD).
        J: J = (I + P_0H)⁻¹ (unit lower triangular).
        Jp: J′ = (I + HP_0)⁻¹ = I − HJP_0.
        HJ: the product HJ.
        A0: first-layer forward response A_0 = σ²⟨∂q̂/∂r⁰⟩ = −σ²HJ/(γ0ν) (lower triangular).
        C_beta: C_β̃ = β̃·β̃/D, the predictor-error correlation (symmetric).
        C_delta: C_Δ = Δ·Δ/P, the residual correlation (symmetric).
        C_q: C_q = q̂·q̂/D, the gradient-signal correlation (symmetric).
        Sigma_beta: the driving covariance of β̃, σ²C_g^1/(γ0²ν) + P_0C_ΔP_0ᵀ/α + ρ*𝟙𝟙ᵀ (C_β̃ = JΣ_βJᵀ).
        hj_ones: the vector HJ𝟙 (length T).
    """

    P0: Array
    R: Array
    H: Array
    J: Array
    Jp: Array
    HJ: Array
    A0: Array
    C_beta: Array
    C_delta: Array
    C_q: Array
    Sigma_beta: Array
    hj_ones: Array

    symmetric = frozenset({"C_beta", "C_delta", "C_q", "Sigma_beta"})


class MarchState(NamedTuple):
    """Everything the march carries.

    ``layers`` is either a tuple with ``layers[ℓ]`` the :class:`LayerState` of ℓ = 1..L (``layers[0]`` is None; A_0
    is ``data.A0``), one buffer per field and layer (unrolled march), or a single :class:`LayerState` whose fields
    are stacked over ℓ = 0..L, ``C_e[0]`` mirroring C_q (layer-scan march).
    """

    layers: tuple[LayerState | None, ...] | LayerState
    data: DataState


class DeepLinearSolution(NamedTuple):
    """Level-1 solution of :func:`solve` (every array float64; T = ``steps``). Names are those of the Dataset.

    Layered fields are stacked along a leading layer axis indexed by the integer ℓ = 0..L: ``C_g[ℓ]`` is C_g^ℓ.
    Slot 0 holds the D-space analogues where they exist (e⁰ := q̂, deep_linear.md §8.1): ``C_e[0]`` = C_q and
    ``A[0]`` = A_0; the other fields are zero there.

    Attributes:
        test_loss, train_loss: (T,) ½(C_β̃(t,t) + σ_ε²) and ½C_Δ(t,t); NaN after ``divergence_step``.
        C_beta, C_delta, C_q: (T, T) correlations C_β̃, C_Δ, C_q.
        R, H, J, P0: (T, T) D/P-space responses and operators (see :class:`DataState`).
        C_g, C_e: (L+1, T, T) backward/forward-field correlations C_g^ℓ, C_e^ℓ.
        A: (L+1, T, T) forward responses A_ℓ (ℓ = 0..L−1; A[L] = 0).
        B: (L+1, T, T) backward responses B_ℓ (ℓ = 1..L).
        P, Q: (L+1, T, T) forward / backward spike operators P_ℓ, Q_ℓ (ℓ = 1..L).
        M, F: (L+1, T, T) resolvents 𝕄_ℓ = (I − Q_ℓP_ℓ)⁻¹, 𝔽_ℓ = (I − P_ℓQ_ℓ)⁻¹ (ℓ = 1..L).
        diverged: bool; a loss became non-finite or exceeded the threshold times its initial value.
        divergence_step: the first such step, -1 if none (:data:`dmft.results.NOT_DIVERGED`).
        residual: largest relative residual of the global T×T equations on the rows up to the divergence step
            (NaN unless ``check``).
    """

    test_loss: Array
    train_loss: Array
    C_beta: Array
    C_delta: Array
    C_q: Array
    R: Array
    H: Array
    J: Array
    P0: Array
    C_g: Array
    C_e: Array
    A: Array
    B: Array
    P: Array
    Q: Array
    M: Array
    F: Array
    diverged: Array
    divergence_step: Array
    residual: Array

    @property
    def A_0(self) -> Array:
        """A_0, the first-layer forward response (= ``A[0]``; the Dataset's ``A_0``)."""
        return self.A[..., 0, :, :]

    @property
    def depth(self) -> int:
        return self.C_g.shape[-3] - 1

    @property
    def steps(self) -> int:
        return self.test_loss.shape[-1]


def _empty_state(depth: int, T: int, layer_scan: bool) -> MarchState:
    z = jnp.zeros((T, T))
    data = DataState(*(z for _ in DataState._fields[:-1]), hj_ones=jnp.zeros(T))
    if layer_scan:  # one LayerState stacked over ℓ = 0..L (slot 0: C_e[0] mirrors C_q)
        zl = jnp.zeros((depth + 1, T, T))
        return MarchState(LayerState(*(zl for _ in LayerState._fields)), data)
    layer = LayerState(*(z for _ in LayerState._fields))
    return MarchState((None,) + tuple(layer for _ in range(depth)), data)


# --------------------------------------------------------------------------------------------------------------
# One row of the march: backward pass, data spaces, forward pass
# --------------------------------------------------------------------------------------------------------------


class _Row(NamedTuple):
    """Index helpers for row t, and products of a new row with a matrix whose row t is being computed.

    Every product reads the old matrix (rows < t) and adds the new row explicitly, so that all reads of the old
    buffers happen before the writes and XLA updates the buffers in place.
    """

    t: Array
    e_t: Array  # unit vector at t
    below: Array  # s < t (strictly lower)
    upto: Array  # s ≤ t

    @staticmethod
    def at(t: Array, T: int) -> _Row:
        idx = jnp.arange(T)
        return _Row(t, (idx == t).astype(jnp.float64), idx < t, idx <= t)

    def vm(self, v: Array, old: Array, new: Array) -> Array:
        """v @ X for a causal X with new row t ``new``."""
        return v @ old + v[self.t] * new

    def mv(self, old: Array, new: Array, w: Array) -> Array:
        """X @ w for a causal X with new row t ``new``."""
        return old @ w + self.e_t * (new @ w)

    def vsym(self, v: Array, old: Array, new: Array) -> Array:
        """v @ S for a symmetric S with new row and column t ``new``."""
        return v @ old + v[self.t] * new + (v @ new - v[self.t] * new[self.t]) * self.e_t

    def causal(self, row: Array) -> Array:
        """Zero the entries s > t of a new row."""
        return jnp.where(self.upto, row, 0.0)


class _Backward(NamedTuple):
    """New rows of the backward pass of layer ℓ."""

    Q: Array
    M: Array
    B: Array
    Sigma_g: Array
    C_g: Array


class _Forward(NamedTuple):
    """New rows of the forward pass of layer ℓ."""

    P: Array
    F: Array
    A: Array
    Sigma_e: Array
    C_e: Array


def _backward_layer(
    row: _Row, old: LayerState, c_in_old: Array, above: _Backward, top: bool | Array, first: bool | Array,
    p: DeepLinearParams,
) -> _Backward:
    """Row t of Q_ℓ, 𝕄_ℓ, B_ℓ, Σ_g^ℓ, C_g^ℓ from the new rows of layer ℓ+1 (``above``).

    ``top``: ℓ = L (readout above: Q_L = ηγ0 SL, Σ_r^L = σ_w²𝟙𝟙ᵀ; ``above`` is ignored); ``first``: ℓ = 1
    (c_1 = ν). Both may be Python bools or traced (layer scan).
    """
    eg, sig2 = p.lr * p.gamma0, p.sigma**2
    q_row = jnp.where(top, jnp.where(row.below, eg, 0.0), above.B + eg * jnp.where(row.below, above.C_g, 0.0))
    sigma_r_row = jnp.where(top, row.causal(jnp.full_like(row.e_t, p.sigma_readout**2)), sig2 * above.C_g)
    m_row = row.e_t + (q_row @ old.P) @ old.M
    c_ell = jnp.where(first, p.width_ratio, 1.0)
    b_row = sig2 * c_ell * row.vm(m_row, old.Q, q_row)
    # q_row vanishes at t, so rows < t of C_in suffice
    sg_row = row.causal(sigma_r_row + sig2 * row.mv(old.Q, q_row, q_row @ c_in_old))
    cg_row = row.causal(row.mv(old.M, m_row, row.vsym(m_row, old.Sigma_g, sg_row)))
    return _Backward(q_row, m_row, b_row, sg_row, cg_row)


def _data_spaces(
    row: _Row, old: DataState, first: _Backward, cg1_old: Array, p: DeepLinearParams, sgd: bool
) -> DataState:
    """Row t of every D-space and P-space object (β, Δ, q̂), from the new rows of layer 1's backward pass
    (``first``) and the old C_g^1 (``cg1_old``)."""
    sig2, nu, alpha = p.sigma**2, p.width_ratio, p.alpha
    g0nu = p.gamma0 * nu
    p0_row = first.B / g0nu + p.lr * jnp.where(row.below, first.C_g, 0.0)
    if sgd:  # one-pass SGD: H = I, no data response (deep_linear.md §7.1)
        j_row = row.e_t - p0_row @ old.J
        r_row = jnp.zeros_like(row.e_t)
        h_row = row.e_t
        hj_row = j_row
    else:
        j_row = row.e_t - (p0_row @ old.H) @ old.J
        r_row = row.vm(j_row, old.P0, p0_row) / alpha
        h_row = row.e_t - r_row @ old.H
        hj_row = row.vm(h_row, old.J, j_row)
    jp_row = row.e_t - row.vm(hj_row, old.P0, p0_row)
    hj_ones = old.hj_ones + row.e_t * jnp.sum(hj_row)
    a0_row = -sig2 / g0nu * hj_row

    init_var = sig2 / (p.gamma0**2 * nu)
    sb_row = row.causal(init_var * first.C_g + row.mv(old.P0, p0_row, p0_row @ old.C_delta) / alpha
                        + p.teacher_variance)
    cb_row = row.causal(row.mv(old.J, j_row, row.vsym(j_row, old.Sigma_beta, sb_row)))
    if sgd:
        cd_row = row.e_t * (cb_row[row.t] + p.noise**2)
    else:
        # C_Δ = H(σ_ε²𝟙𝟙ᵀ + C_β̃)Hᵀ; H is unit lower triangular, so only the leading (t+1)² block enters.
        h_ones = old.H @ jnp.ones_like(row.e_t) + row.e_t * jnp.sum(h_row)
        cd_row = row.causal(row.mv(old.H, h_row, row.vsym(h_row, old.C_beta, cb_row))
                            + p.noise**2 * jnp.sum(h_row) * h_ones)
    cq_row = row.causal(
        row.mv(old.Jp, jp_row, row.vsym(jp_row, old.C_delta, cd_row)) / alpha
        + init_var * row.mv(old.HJ, hj_row, row.vsym(hj_row, cg1_old, first.C_g))
        + p.teacher_variance * hj_ones * hj_ones[row.t]
    )
    return DataState(p0_row, r_row, h_row, j_row, jp_row, hj_row, a0_row, cb_row, cd_row, cq_row, sb_row, hj_ones)


def _forward_layer(
    row: _Row, old: LayerState, back_q: Array, c_in_row: Array, a_in_row: Array, c_g_above: tuple[Array, Array],
    last: bool | Array, p: DeepLinearParams,
) -> _Forward:
    """Row t of P_ℓ, 𝔽_ℓ, A_ℓ, Σ_e^ℓ, C_e^ℓ from the new rows of C_in^ℓ (``c_in_row``), A_{ℓ−1} (``a_in_row``) and
    Q_ℓ (``back_q``), and (old, new row) of C_g^{ℓ+1} (``c_g_above``).

    ``last``: ℓ = L (Σ_r^L = σ_w²𝟙𝟙ᵀ, A_L = 0; ``c_g_above`` is ignored). A Python bool computes one branch; a
    traced one (layer scan) computes both and selects.
    """
    eg, sig2 = p.lr * p.gamma0, p.sigma**2
    p_row = a_in_row + eg * jnp.where(row.below, c_in_row, 0.0)
    f_row = row.e_t + row.vm(p_row, old.Q, back_q) @ old.F

    def readout() -> tuple[Array, Array]:
        p_ones = old.P @ jnp.ones_like(p_row) + row.e_t * jnp.sum(p_row)
        return jnp.zeros_like(p_row), sig2 * c_in_row + p.sigma_readout**2 * jnp.sum(p_row) * p_ones

    def hidden() -> tuple[Array, Array]:
        cg_old, cg_new = c_g_above
        a_row = sig2 * row.vm(f_row, old.P, p_row)
        return a_row, sig2 * c_in_row + sig2 * row.mv(old.P, p_row, row.vsym(p_row, cg_old, cg_new))

    if isinstance(last, bool):
        a_row, se_row = readout() if last else hidden()
    else:
        a_row, se_row = jax.tree.map(lambda r, h: jnp.where(last, r, h), readout(), hidden())
    se_row = row.causal(se_row)
    ce_row = row.causal(row.mv(old.F, f_row, row.vsym(f_row, old.Sigma_e, se_row)))
    return _Forward(p_row, f_row, a_row, se_row, ce_row)


def _write_rows(old: LayerState | DataState, new: LayerState | DataState, t: Array, dep: Array):
    """Write row t of every field (symmetric fields: row and column t); vectors are replaced whole. Stacked
    (layer-scan) fields get row t of every layer at once."""
    out = []
    for name, x, r in zip(old._fields, old, new, strict=True):
        if x.ndim == 1:
            out.append(r + dep)
            continue
        x = x.at[..., t, :].set(r + dep)
        out.append(x.at[..., :, t].set(r + dep) if name in old.symmetric else x)
    return type(old)(*out)


def _merge_rows(back: _Backward, fwd: _Forward) -> LayerState:
    return LayerState(P=fwd.P, Q=back.Q, M=back.M, F=fwd.F, C_g=back.C_g, C_e=fwd.C_e, A=fwd.A, B=back.B,
                      Sigma_g=back.Sigma_g, Sigma_e=fwd.Sigma_e)


def _ordered_writes(state: MarchState, layer_rows: Any, data_rows: DataState, t: Array) -> MarchState:
    """Write every new row after every read: a zero that depends on every new row orders the writes."""
    dep = 0.0 * sum(jnp.sum(r[..., :1]) for r in jax.tree.leaves((layer_rows, data_rows)))
    if isinstance(state.layers, LayerState):
        layers = _write_rows(state.layers, layer_rows, t, dep)
    else:
        layers = tuple(None if r is None else _write_rows(x, r, t, dep) for x, r in zip(state.layers, layer_rows))
    return MarchState(layers, _write_rows(state.data, data_rows, t, dep))


def _row_step(state: MarchState, t: Array, p: DeepLinearParams, depth: int, sgd: bool) -> MarchState:
    """Compute row t of every order parameter from rows < t, in the causal order of one GD step: backward pass
    ℓ = L..1, data spaces (β, Δ, q̂), forward pass ℓ = 1..L; then write all rows (layers unrolled, one buffer per
    field and layer)."""
    L = depth
    layers, data = state.layers, state.data
    T = data.R.shape[0]
    row = _Row.at(t, T)

    def c_in_old(ell: int) -> Array:
        return data.C_q if ell == 1 else layers[ell - 1].C_e

    back: list[_Backward] = [None] * (L + 2)  # type: ignore[list-item]
    back[L + 1] = _Backward(*(jnp.zeros(T) for _ in _Backward._fields))  # unused: ℓ = L sits below the readout
    for ell in range(L, 0, -1):
        back[ell] = _backward_layer(row, layers[ell], c_in_old(ell), back[ell + 1], ell == L, ell == 1, p)
    new_data = _data_spaces(row, data, back[1], layers[1].C_g, p, sgd)

    fwd: list[_Forward] = [None] * (L + 1)  # type: ignore[list-item]
    for ell in range(1, L + 1):
        c_in_row = new_data.C_q if ell == 1 else fwd[ell - 1].C_e
        a_in_row = new_data.A0 if ell == 1 else fwd[ell - 1].A
        above = (None, None) if ell == L else (layers[ell + 1].C_g, back[ell + 1].C_g)
        fwd[ell] = _forward_layer(row, layers[ell], back[ell].Q, c_in_row, a_in_row, above, ell == L, p)

    new_layers = [None] + [_merge_rows(back[ell], fwd[ell]) for ell in range(1, L + 1)]
    return _ordered_writes(state, new_layers, new_data, t)


def _row_step_layer_scan(state: MarchState, t: Array, p: DeepLinearParams, depth: int, sgd: bool) -> MarchState:
    """The same row as :func:`_row_step` with the layers in a ``lax.scan`` over ℓ (state stacked over layers):
    one compiled layer body whatever the depth, at the price of copying each layer's matrices out of the stack."""
    L = depth
    lay, data = state.layers, state.data
    T = data.R.shape[0]
    row = _Row.at(t, T)

    def layer(ell: Array) -> LayerState:
        return jax.tree.map(lambda x: x[ell], lay)

    def backward(above: _Backward, ell: Array) -> tuple[_Backward, _Backward]:
        # C_in^ℓ is C_e^{ℓ−1}, and C_e[0] holds C_q
        b = _backward_layer(row, layer(ell), lay.C_e[ell - 1], above, ell == L, ell == 1, p)
        return b, b

    zero = _Backward(*(jnp.zeros(T) for _ in _Backward._fields))
    first, back = jax.lax.scan(backward, zero, jnp.arange(L, 0, -1))
    back = jax.tree.map(lambda x: x[::-1], back)  # back.X[ℓ − 1] is layer ℓ
    new_data = _data_spaces(row, data, first, lay.C_g[1], p, sgd)

    def forward(carry: tuple[Array, Array], ell: Array) -> tuple[tuple[Array, Array], _Forward]:
        c_in_row, a_in_row = carry
        up = jnp.minimum(ell, L - 1)  # layer ℓ + 1 (ignored at ℓ = L)
        above = (lay.C_g[up + 1], back.C_g[up])
        f = _forward_layer(row, layer(ell), back.Q[ell - 1], c_in_row, a_in_row, above, ell == L, p)
        return (f.C_e, f.A), f

    _, fwd = jax.lax.scan(forward, (new_data.C_q, new_data.A0), jnp.arange(1, L + 1))
    rows = _merge_rows(back, fwd)
    slot0 = LayerState(*(jnp.zeros((1, T)) for _ in LayerState._fields))._replace(C_e=new_data.C_q[None])
    rows = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), slot0, rows)
    return _ordered_writes(state, rows, new_data, t)


# --------------------------------------------------------------------------------------------------------------
# Global check, march, solve
# --------------------------------------------------------------------------------------------------------------


def _layer_at(state: MarchState, ell: int) -> LayerState:
    """Layer ℓ's T×T objects, from either layout of the march state."""
    if isinstance(state.layers, LayerState):
        return jax.tree.map(lambda x: x[ell], state.layers)
    return state.layers[ell]


def _residuals(s: MarchState, p: DeepLinearParams, depth: int, sgd: bool, n_valid: Array) -> Array:
    """Largest relative residual of the global T×T equations on the leading n_valid×n_valid block.

    Every equation X = Y is tested as Xv = Yv for a fixed random probe v (zero beyond n_valid); by causality the
    leading block of Xv depends only on the leading block of X.
    """
    d = s.data
    T = d.R.shape[0]
    idx = jnp.arange(T)
    mask = idx < n_valid
    v = jnp.where(mask, jax.random.normal(jax.random.key(17), (T,)), 0.0)
    eye = jnp.eye(T)
    sl = jnp.tril(jnp.ones((T, T)), -1)
    eg, sig2, nu = p.lr * p.gamma0, p.sigma**2, p.width_ratio
    res = []

    def rel(x: Array, y: Array) -> Array:
        x, y = jnp.where(mask, x, 0.0), jnp.where(mask, y, 0.0)
        return jnp.linalg.norm(x - y) / (jnp.linalg.norm(x) + jnp.linalg.norm(y) + 1e-300)

    def outer_mv(a: Array, m: Array, b: Array, vec: Array) -> Array:  # (a m bᵀ) v
        return a @ (m @ (b.T @ vec))

    L = depth
    layers = [None] + [_layer_at(s, ell) for ell in range(1, L + 1)]
    for ell in range(1, L + 1):
        lay = layers[ell]
        cin = d.C_q if ell == 1 else layers[ell - 1].C_e
        a_in = d.A0 if ell == 1 else layers[ell - 1].A
        if ell == L:
            Sr = p.sigma_readout**2 * jnp.ones((T, T))
            Qexp = eg * sl
        else:
            Sr = sig2 * layers[ell + 1].C_g
            Qexp = layers[ell + 1].B + eg * sl * layers[ell + 1].C_g
        Pexp = a_in + eg * sl * cin
        P, Q, MM, FF = lay.P, lay.Q, lay.M, lay.F
        res += [rel(Q @ v, Qexp @ v), rel(P @ v, Pexp @ v)]
        res.append(rel(MM @ v - Q @ (P @ (MM @ v)), v))
        res.append(rel(FF @ v - P @ (Q @ (FF @ v)), v))
        cg = MM @ (Sr @ (MM.T @ v)) + sig2 * outer_mv(MM @ Q, cin, MM @ Q, v)
        res.append(rel(lay.C_g @ v, cg))
        ce = sig2 * FF @ (cin @ (FF.T @ v)) + outer_mv(FF @ P, Sr, FF @ P, v)
        res.append(rel(lay.C_e @ v, ce))
        c_ell = nu if ell == 1 else 1.0
        res.append(rel(lay.B @ v, sig2 * c_ell * (MM @ (Q @ v))))
        if ell < L:
            res.append(rel(lay.A @ v, sig2 * (FF @ (P @ v))))
    first = layers[1]
    P0, H, J = d.P0, d.H, d.J
    res.append(rel(P0 @ v, (first.B / (p.gamma0 * nu) + p.lr * sl * first.C_g) @ v))
    res.append(rel(J @ v + P0 @ (H @ (J @ v)), v))
    if not sgd:
        res.append(rel(d.R @ v, J @ (P0 @ v) / p.alpha))
        res.append(rel(H @ v + d.R @ (H @ v), v))
    HJ = H @ J
    res.append(rel(d.A0 @ v, -sig2 / (p.gamma0 * nu) * (HJ @ v)))
    init_var = sig2 / (p.gamma0**2 * nu)
    ones = jnp.where(mask, 1.0, 0.0)
    j1 = J @ ones
    cb = init_var * (J @ (first.C_g @ (J.T @ v))) + outer_mv(J @ P0, d.C_delta, J @ P0, v) / p.alpha
    cb = cb + p.teacher_variance * j1 * (j1 @ v)
    res.append(rel(d.C_beta @ v, cb))
    if sgd:
        cd = (jnp.diag(d.C_beta) + p.noise**2) * v
    else:
        h1 = H @ ones
        cd = H @ (d.C_beta @ (H.T @ v)) + p.noise**2 * h1 * (h1 @ v)
    res.append(rel(d.C_delta @ v, cd))
    Jp = eye - HJ @ P0
    hj1 = HJ @ ones
    cq = outer_mv(Jp, d.C_delta, Jp, v) / p.alpha + init_var * (HJ @ (first.C_g @ (HJ.T @ v)))
    cq = cq + p.teacher_variance * hj1 * (hj1 @ v)
    res.append(rel(d.C_q @ v, cq))
    return jnp.max(jnp.stack(res))


def solve(
    params: DeepLinearParams,
    steps: int,
    depth: int,
    sgd: bool = False,
    divergence_threshold: float = 1e6,
    check: bool = True,
    layer_scan: bool | None = None,
) -> DeepLinearSolution:
    """Solve the deep-linear DMFT for ``steps`` time points (t = 0..T−1). Pure and jit/vmap/grad-able.

    Returns a :class:`DeepLinearSolution`: losses, every correlation and response, layered objects stacked over
    ℓ = 0..L (``sol.C_g[ℓ]``), and the status (``diverged``, ``divergence_step`` = first t whose loss was not
    finite or exceeded ``divergence_threshold`` × its initial value, -1 if none; ``residual``). Losses after
    ``divergence_step`` are NaN (the convention of :mod:`dmft.results`).

    ``layer_scan`` (default: depth ≥ :data:`LAYER_SCAN_DEPTH`) runs the layers of each row in a ``lax.scan``:
    compile time independent of the depth, a slower row (each layer's matrices are copied out of a stack).
    Both layouts run the same layer functions and agree to rounding. Parameters are cast to float64 arrays
    first, so Python floats and arrays share one compiled solver.
    """
    require_x64("solve")
    params = DeepLinearParams(*(jnp.asarray(x, dtype=jnp.float64) for x in params))
    threshold = jnp.asarray(divergence_threshold, dtype=jnp.float64)
    scan = depth >= LAYER_SCAN_DEPTH if layer_scan is None else bool(layer_scan)
    return _solve(params, steps, depth, sgd, threshold, check, scan)


#: Depth from which the march scans over layers instead of unrolling them (compile time ~1.7 s CPU per unrolled
#: layer on the 2-core test machine).
LAYER_SCAN_DEPTH = 5


def block_ends(steps: int) -> list[int]:
    """Ends of the time blocks of the march. Rows in block k only touch the leading end_k × end_k corner, so
    marching block by block on growing arrays moves ~½ of the memory of a full-size march (4 blocks) at the
    price of one compiled loop body per block. Short horizons use a single block."""
    blocks = 1 if steps < 768 else 4
    return [round(steps * (k + 1) / blocks) for k in range(blocks)]


def _march(p: DeepLinearParams, steps: int, depth: int, sgd: bool, layer_scan: bool = False) -> MarchState:
    """Run the row step for t = 0..T−1, block by block, on arrays that grow to T×T."""
    step = _row_step_layer_scan if layer_scan else _row_step

    def body(state: MarchState, t: Array) -> tuple[MarchState, None]:
        return step(state, t, p, depth, sgd), None

    def grow(x: Array, g: int) -> Array:  # pad the time axes (the last one or two)
        n_time = 1 if x.ndim == 1 else 2
        return jnp.pad(x, [(0, 0)] * (x.ndim - n_time) + [(0, g)] * n_time)

    start = 0
    state = None
    for end in block_ends(steps):
        if state is None:
            state = _empty_state(depth, end, layer_scan)
        else:
            state = jax.tree.map(lambda x, g=end - start: grow(x, g), state)
        state, _ = jax.lax.scan(body, state, jnp.arange(start, end))
        start = end
    return state


def _divergence(losses: Array, threshold: Array) -> Array:
    """First step at which any loss curve (rows of ``losses``) is non-finite or exceeds ``threshold`` times its
    own value at t = 0; -1 if none (the rule of :func:`dmft.results.divergence`, inside the compiled solve)."""
    ref = jnp.maximum(jnp.abs(losses[:, :1]), 1e-300)
    bad = jnp.any(~jnp.isfinite(losses) | (jnp.abs(losses) > threshold * ref), axis=0)
    return jnp.where(jnp.any(bad), jnp.argmax(bad), NOT_DIVERGED)


@partial(jax.jit, static_argnames=("steps", "depth", "sgd", "check", "layer_scan"))
def _solve(
    params: DeepLinearParams,
    steps: int,
    depth: int,
    sgd: bool = False,
    divergence_threshold: float = 1e6,
    check: bool = True,
    layer_scan: bool = False,
) -> DeepLinearSolution:
    p = params
    state = _march(p, steps, depth, sgd, layer_scan)
    d = state.data
    test = 0.5 * (jnp.diag(d.C_beta) + p.noise**2)
    train = 0.5 * jnp.diag(d.C_delta)
    step = _divergence(jnp.stack([train, test]), divergence_threshold)
    diverged = step >= 0
    keep = ~diverged | (jnp.arange(steps) <= step)
    n_valid = jnp.where(diverged, step, steps)

    zero = jnp.zeros((steps, steps))

    def stacked(name: str, slot0: Array = zero) -> Array:
        if isinstance(state.layers, LayerState):
            return getattr(state.layers, name).at[0].set(slot0)
        return jnp.stack([slot0] + [getattr(state.layers[ell], name) for ell in range(1, depth + 1)])

    return DeepLinearSolution(
        test_loss=jnp.where(keep, test, jnp.nan),
        train_loss=jnp.where(keep, train, jnp.nan),
        C_beta=d.C_beta, C_delta=d.C_delta, C_q=d.C_q, R=d.R, H=d.H, J=d.J, P0=d.P0,
        C_g=stacked("C_g"), C_e=stacked("C_e", d.C_q), A=stacked("A", d.A0), B=stacked("B"), P=stacked("P"),
        Q=stacked("Q"), M=stacked("M"), F=stacked("F"),
        diverged=diverged,
        divergence_step=step,
        residual=_residuals(state, p, depth, sgd, n_valid) if check else jnp.asarray(jnp.nan),
    )


# --------------------------------------------------------------------------------------------------------------
# Level 2 and config-level entry points
# --------------------------------------------------------------------------------------------------------------


class Level2(NamedTuple):
    """Outliers of every weight matrix (level 2, spectra.md), on the step axis t (names as in the Dataset).

    Attributes:
        outlier_sv: (L, T, k_max) outlier singular values of M^layer after t steps, descending; NaN where there is
            no outlier or the step was not evaluated.
        outlier_evaluated: (T,) the steps at which level 2 was evaluated.
        bulk_edge: (L,) bulk edge of each layer's singular-value law.
        n_outliers: (L, T) number of outliers above the edge (-1 where not evaluated).
        outliers_converged: (L,) every root met its tolerance.
        gram_consistency: (L,) largest ΦᵀZ = (GᵀY)ᵀ identity error of the Grams used.
    """

    outlier_sv: Array
    outlier_evaluated: Array
    bulk_edge: Array
    n_outliers: Array
    outliers_converged: Array
    gram_consistency: Array


def _level2(sol: DeepLinearSolution, p: DeepLinearParams, depth: int, k_max: int, steps: np.ndarray) -> Level2:
    """Outliers of every weight matrix at the given steps (spectra.md), stacked over layers and scattered onto
    t = 0..T−1 (NaN, n_outliers = −1 and ``outlier_evaluated`` False at the other steps)."""
    from .spectra import layer_outliers

    T = sol.test_loss.shape[-1]
    outs = [layer_outliers(sol, p, layer, depth, k_max, steps) for layer in range(depth)]
    sv = jnp.full((depth, T, k_max), jnp.nan).at[:, steps].set(jnp.stack([o.sv for o in outs]))
    n_out = jnp.full((depth, T), -1).at[:, steps].set(jnp.stack([o.n_outliers for o in outs]))
    return Level2(
        outlier_sv=sv,
        outlier_evaluated=jnp.zeros(T, dtype=bool).at[steps].set(True),
        bulk_edge=jnp.stack([o.edge[0] for o in outs]),
        n_outliers=n_out,
        outliers_converged=jnp.stack([jnp.all(o.converged) for o in outs]),
        gram_consistency=jnp.stack([jnp.nanmax(o.consistency) for o in outs]),
    )


def _level2_steps(cfg: Config) -> np.ndarray:
    """Level-2 steps from ``solver.outlier_every``, including the steps at which the twin records spectra."""
    from .spectra import level2_steps

    return level2_steps(cfg.optim.steps, cfg.solver.outlier_every, spectrum_steps(cfg))


def _wants_level2(cfg: Config) -> bool:
    return cfg.solver.outliers


def to_dataset(sol: DeepLinearSolution, cfg: Config, level2: Level2 | None = None, full: bool = True) -> xr.Dataset:
    """Package a solution on the common schema (:mod:`dmft.results`): losses on ``t``; two-time functions on
    (``t``, ``s``); layered ones on (``space``, ``t``, ``s``) with ``space`` = ℓ = 1..L; outliers on (``layer``,
    ``t``, ``k``); status variables; ``long_name`` on every variable and coordinate."""
    T, L = cfg.optim.steps, cfg.model.depth
    t = np.arange(T)
    sol = jax.tree.map(np.asarray, sol)
    step = int(sol.divergence_step)
    residual = float(sol.residual)
    converged = bool(np.isfinite(residual) and residual < cfg.solver.tol)
    ds = xr.Dataset(
        {
            "train_loss": ("t", mask_after(sol.train_loss, step, t)),
            "test_loss": ("t", mask_after(sol.test_loss, step, t)),
            "residual": ((), residual),
            **status_variables(bool(sol.diverged), step, converged),
        },
        coords={"t": t},
        attrs={"family": "deep_linear", "kind": "theory"},
    )
    if full:
        two = ("t", "s")
        for name in ("C_beta", "C_delta", "C_q", "R", "H", "J", "P0"):
            ds[name] = (two, getattr(sol, name))
        ds["A_0"] = (two, sol.A_0)
        lay = ("space", "t", "s")
        for name in ("C_g", "C_e", "B", "P", "Q", "M", "F", "A"):
            ds[name] = (lay, getattr(sol, name)[1:])
        ds = ds.assign_coords(space=np.arange(1, L + 1), s=t)
        ds["A"].attrs["note"] = "A_ℓ for ℓ = 1..L−1; the row ℓ = L is unused (zero)"
    if level2 is not None:
        lv = jax.tree.map(np.asarray, level2)
        ds["outlier_sv"] = (("layer", "t", "k"), mask_after(lv.outlier_sv, step, t, t_axis=1))
        ds["outlier_sv"].attrs["note"] = "M⁰ = W⁰/√D, M^ℓ = W^ℓ/√N; level 2 of the two-level DMFT"
        ds["bulk_edge"] = ("layer", lv.bulk_edge)
        after = (step >= 0) & (t > step)
        ds["n_outliers"] = (("layer", "t"), np.where(after[None, :], -1, lv.n_outliers))
        ds["n_outliers"].attrs["note"] = "−1 at steps where level 2 was not evaluated (or after a divergence)"
        ds["outlier_evaluated"] = ("t", lv.outlier_evaluated)
        ds["outlier_evaluated"].attrs["note"] = "steps at which level 2 was evaluated (solver.outlier_every)"
        born = np.isfinite(ds["outlier_sv"].values)
        ds["escape_step"] = (("layer", "k"), np.where(born.any(axis=1), born.argmax(axis=1), -1))
        ds["gram_consistency"] = ("layer", lv.gram_consistency)
        ds["outliers_converged"] = ("layer", lv.outliers_converged)
        ds = ds.assign_coords(layer=np.arange(L), k=np.arange(lv.outlier_sv.shape[-1]))
    ds["test_loss"].attrs["formula"] = "½(C_β̃(t,t) + σ_ε²)"
    ds["train_loss"].attrs["formula"] = "½ C_Δ(t,t)"
    if step >= 0:
        warnings.warn(
            f"deep_linear DMFT diverged at step {step} (lr = {cfg.optim.lr} is past stability): values after "
            "that step are NaN and 'diverged' is set",
            RuntimeWarning,
            stacklevel=3,
        )
    return finalize(ds, LONG_NAMES)


def solve_config(cfg: Config) -> xr.Dataset:
    """Theory for one config (family ``deep_linear``): level 1, and level 2 (outliers) when ``solver.outliers``."""
    p = params_from_config(cfg)
    sol = solve(
        p,
        cfg.optim.steps,
        cfg.model.depth,
        sgd=cfg.optim.batch_ratio is not None,
        divergence_threshold=cfg.solver.divergence_threshold,
    )
    level2 = None
    if _wants_level2(cfg):
        level2 = _level2(sol, p, cfg.model.depth, cfg.solver.max_outliers, _level2_steps(cfg))
    return _with_kernel(to_dataset(sol, cfg, level2), sol, cfg)


def _with_kernel(ds: xr.Dataset, sol: DeepLinearSolution, cfg: Config) -> xr.Dataset:
    """Add the stability-kernel sharpness (edge_of_stability.md; :mod:`.kernel`) when ``solver.sharpness``."""
    if not cfg.solver.sharpness:
        return ds
    from .kernel import add_kernel

    return add_kernel(ds, sol, params_from_config(cfg), cfg)


def solve_batch(cfgs: list[Config]) -> list[xr.Dataset]:
    """Configs differing only in vmappable keys, solved by one vmapped, once-compiled call."""
    first = cfgs[0]
    sgd = first.optim.batch_ratio is not None
    if any((c.optim.batch_ratio is not None) != sgd for c in cfgs):
        return [solve_config(c) for c in cfgs]
    stacked = DeepLinearParams(*(jnp.stack(x) for x in zip(*(params_from_config(c) for c in cfgs), strict=True)))
    thresholds = jnp.asarray([c.solver.divergence_threshold for c in cfgs])
    level2 = _wants_level2(first) and all(_wants_level2(c) for c in cfgs)
    steps2 = _level2_steps(first) if level2 else None

    def one(p: DeepLinearParams, th: Array) -> tuple[DeepLinearSolution, Level2 | None]:
        sol = solve(p, first.optim.steps, first.model.depth, sgd, th)
        return sol, (_level2(sol, p, first.model.depth, first.solver.max_outliers, steps2) if level2 else None)

    sols, lv2 = jax.vmap(one)(stacked, thresholds)
    pick = lambda tree, i: None if tree is None else jax.tree.map(lambda x: x[i], tree)  # noqa: E731
    return [_with_kernel(to_dataset(pick(sols, i), c, pick(lv2, i)), pick(sols, i), c) for i, c in enumerate(cfgs)]
