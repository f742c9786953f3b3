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
"""

from __future__ import annotations

import warnings
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jaxtyping import Array, Float

from ..._jax import require_x64
from ...config import Config
from ...scaling import effective_gamma0, parameterization_code
from .problem import lazy_kappa

__all__ = [
    "DeepLinearParams",
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

    with λ ~ Marchenko–Pastur law of XᵀX/P (ratio y = 1/α, atom 1 − α at 0 when α < 1), evaluated by
    Gauss–Chebyshev quadrature of the second kind (exact for the square-root edges of the density).
    """
    kappa = lazy_kappa(depth, sigma, sigma_readout)
    y = 1.0 / alpha
    lo, hi = (1 - np.sqrt(y)) ** 2, (1 + np.sqrt(y)) ** 2
    k = np.arange(1, n_nodes + 1)
    theta = k * np.pi / (n_nodes + 1)
    x = np.cos(theta)
    lam = 0.5 * (hi + lo) + 0.5 * (hi - lo) * x
    # ∫ f(λ) √((hi−λ)(λ−lo))/(2πyλ) dλ = ∫_{-1}^{1} g(x) √(1−x²) dx, g = f(λ)(hi−lo)²/4/(2πyλ)
    w_cheb = np.pi / (n_nodes + 1) * np.sin(theta) ** 2  # Gauss–Chebyshev (2nd kind) weights for √(1−x²)
    weights = w_cheb * (hi - lo) ** 2 / 4 / (2 * np.pi * y * lam)
    atom = max(0.0, 1.0 - alpha)
    c0 = teacher_variance + sigma ** (2 * depth) * sigma_readout**2 / gamma0_tilde**2
    t = np.arange(steps)[:, None]
    decay = (1 - lr * kappa * lam[None, :]) ** t
    signal = c0 * ((decay**2) @ weights + atom)
    noise_part = noise**2 / alpha * (((1 - decay) ** 2 / lam[None, :]) @ weights)
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
# The marching solver
# --------------------------------------------------------------------------------------------------------------


def _sym_set(x: Float[Array, "t t"], t: Array, row: Float[Array, " t"], le: Array) -> Float[Array, "t t"]:
    """Write row t (entries u ≤ t) of a symmetric matrix and its transpose."""
    row = jnp.where(le, row, 0.0)
    return x.at[t].set(row).at[:, t].set(row)


def _empty_state(depth: int, T: int) -> dict[str, Array]:
    z = jnp.zeros((T, T))
    names_l = ("P", "Q", "MM", "FF", "Cg", "Ce", "A", "B", "Sg", "Se")
    # per-layer objects as tuples over ℓ = 0..L (unused slots stay zero); separate buffers update in place
    state = {n: tuple(z for _ in range(depth + 1)) for n in names_l}
    for n in ("PD", "R", "H", "J", "Jp", "HJ", "Cb", "CD", "Cq", "Sb"):
        state[n] = z
    state["hj1"] = jnp.zeros(T)
    return state


def _row_step(state: dict[str, Array], t: Array, p: DeepLinearParams, depth: int, sgd: bool) -> dict[str, Array]:
    """Compute row t of every order parameter from rows < t, in the causal order of one GD step.

    Every product reads the matrices as they were before this step (rows < t) and adds the contribution of the
    new row t explicitly (:func:`_vm`, :func:`_mv`, :func:`_vsym`); all rows are written at the end. Keeping reads
    and writes apart lets XLA update the T×T buffers in place (no O(T²) copy per step).
    """
    s = state
    T = s["R"].shape[0]
    idx = jnp.arange(T)
    e_t = (idx == t).astype(jnp.float64)
    sl = idx < t  # strictly lower: s < t
    le = idx <= t
    eg = p.lr * p.gamma0
    sig2 = p.sigma**2
    nu = p.width_ratio
    L = depth
    rows: dict[str, Array] = {}  # new row t of each object, keyed "<name><layer>"

    def vm(v: Array, name: str) -> Array:  # v @ X_new for a causal matrix X
        return v @ s[name[:-1]][int(name[-1])] + v[t] * rows[name] if name[-1].isdigit() else (
            v @ s[name] + v[t] * rows[name])

    def x_old(name: str) -> Array:
        return s[name[:-1]][int(name[-1])] if name[-1].isdigit() else s[name]

    def mv(name: str, w: Array) -> Array:  # X_new @ w
        return x_old(name) @ w + e_t * (rows[name] @ w)

    def vsym(v: Array, name: str) -> Array:  # v @ S_new for a symmetric S with new row/column t
        r = rows[name]
        return v @ x_old(name) + v[t] * r + (v @ r - v[t] * r[t]) * e_t

    def cin_name(ell: int) -> str:
        return "Cq" if ell == 1 else f"Ce{ell - 1}"

    # ---- backward pass ℓ = L..1: Q, 𝕄, B, C_g ---------------------------------------------------------------
    for ell in range(L, 0, -1):
        if ell == L:
            q_row = jnp.where(sl, eg, 0.0)
            sigma_r_row = jnp.where(le, p.sigma_readout**2, 0.0)
        else:
            q_row = rows[f"B{ell + 1}"] + eg * jnp.where(sl, rows[f"Cg{ell + 1}"], 0.0)
            sigma_r_row = sig2 * rows[f"Cg{ell + 1}"]
        rows[f"Q{ell}"] = q_row
        m_row = e_t + (q_row @ s["P"][ell]) @ s["MM"][ell]
        rows[f"MM{ell}"] = m_row
        c_ell = nu if ell == 1 else 1.0
        rows[f"B{ell}"] = sig2 * c_ell * vm(m_row, f"Q{ell}")
        cin = x_old(cin_name(ell))  # rows < t suffice: q_row vanishes at t
        rows[f"Sg{ell}"] = jnp.where(le, sigma_r_row + sig2 * mv(f"Q{ell}", q_row @ cin), 0.0)
        rows[f"Cg{ell}"] = jnp.where(le, mv(f"MM{ell}", vsym(m_row, f"Sg{ell}")), 0.0)

    # ---- D-space and P-space: β, Δ, q̂ ---------------------------------------------------------------------------
    g0nu = p.gamma0 * nu
    p0_row = rows["B1"] / g0nu + p.lr * jnp.where(sl, rows["Cg1"], 0.0)
    rows["PD"] = p0_row
    if sgd:
        j_row = e_t - p0_row @ s["J"]
        rows["J"] = j_row
        rows["H"] = e_t
        rows["R"] = jnp.zeros(T)
        hj_row = j_row
    else:
        j_row = e_t - (p0_row @ s["H"]) @ s["J"]
        rows["J"] = j_row
        r_row = vm(j_row, "PD") / p.alpha
        rows["R"] = r_row
        h_row = e_t - r_row @ s["H"]
        rows["H"] = h_row
        hj_row = vm(h_row, "J")
    rows["HJ"] = hj_row
    rows["Jp"] = e_t - vm(hj_row, "PD")
    hj1 = s["hj1"] + e_t * jnp.sum(hj_row)
    rows["A0"] = -sig2 / g0nu * hj_row

    init_var = sig2 / (p.gamma0**2 * nu)
    sb_row = init_var * rows["Cg1"] + mv("PD", p0_row @ s["CD"]) / p.alpha + p.teacher_variance
    rows["Sb"] = jnp.where(le, sb_row, 0.0)
    rows["Cb"] = jnp.where(le, mv("J", vsym(j_row, "Sb")), 0.0)
    if sgd:
        rows["CD"] = e_t * (rows["Cb"][t] + p.noise**2)
    else:
        # C_Δ = H(σ_ε²𝟙𝟙ᵀ + C_β̃)Hᵀ; H is unit lower triangular, so only the leading (t+1)² block enters.
        h_ones = s["H"] @ jnp.ones(T) + e_t * jnp.sum(h_row)
        cd_row = mv("H", vsym(h_row, "Cb")) + p.noise**2 * jnp.sum(h_row) * h_ones
        rows["CD"] = jnp.where(le, cd_row, 0.0)
    cq_row = (
        mv("Jp", vsym(rows["Jp"], "CD")) / p.alpha
        + init_var * mv("HJ", vsym(hj_row, "Cg1"))
        + p.teacher_variance * hj1 * hj1[t]
    )
    rows["Cq"] = jnp.where(le, cq_row, 0.0)

    # ---- forward pass ℓ = 1..L: P, 𝔽, A, C_e ------------------------------------------------------------------
    for ell in range(1, L + 1):
        cin_row = rows[cin_name(ell)]
        p_row = rows[f"A{ell - 1}"] + eg * jnp.where(sl, cin_row, 0.0)
        rows[f"P{ell}"] = p_row
        f_row = e_t + vm(p_row, f"Q{ell}") @ s["FF"][ell]
        rows[f"FF{ell}"] = f_row
        if ell < L:
            rows[f"A{ell}"] = sig2 * vm(f_row, f"P{ell}")
            se_row = sig2 * cin_row + sig2 * mv(f"P{ell}", vsym(p_row, f"Cg{ell + 1}"))
        else:  # Σ_r^L = σ_w²𝟙𝟙ᵀ
            p_ones = s["P"][ell] @ jnp.ones(T) + e_t * jnp.sum(p_row)
            se_row = sig2 * cin_row + p.sigma_readout**2 * jnp.sum(p_row) * p_ones
        rows[f"Se{ell}"] = jnp.where(le, se_row, 0.0)
        rows[f"Ce{ell}"] = jnp.where(le, mv(f"FF{ell}", vsym(f_row, f"Se{ell}")), 0.0)

    # ---- write every new row (symmetric objects: row and column) ------------------------------------------------
    # A zero that depends on every row computed above: it orders all reads of the old buffers before the writes.
    dep = 0.0 * sum(jnp.sum(r[:1]) for r in rows.values())
    symmetric = ("Cg", "Ce", "Sg", "Se", "Cb", "CD", "Cq", "Sb")
    new = {"hj1": hj1}
    for name, value in s.items():
        if name == "hj1":
            continue
        if isinstance(value, tuple):
            updated = list(value)
            for ell in range(L + 1):
                key = f"{name}{ell}"
                if key in rows:
                    r = rows[key] + dep
                    x = updated[ell].at[t].set(r)
                    updated[ell] = x.at[:, t].set(r) if name in symmetric else x
            new[name] = tuple(updated)
        else:
            r = rows[name] + dep
            x = value.at[t].set(r)
            new[name] = x.at[:, t].set(r) if name in symmetric else x
    return new


def _residuals(s: dict[str, Array], p: DeepLinearParams, depth: int, sgd: bool, n_valid: Array) -> Array:
    """Largest relative residual of the global T×T equations on the leading n_valid×n_valid block.

    Every equation X = Y is tested as Xv = Yv for a fixed random probe v (zero beyond n_valid); by causality the
    leading block of Xv depends only on the leading block of X.
    """
    T = s["R"].shape[0]
    idx = jnp.arange(T)
    mask = idx < n_valid
    v = jnp.where(mask, jax.random.normal(jax.random.key(17), (T,)), 0.0)
    I = jnp.eye(T)
    sl = jnp.tril(jnp.ones((T, T)), -1)
    eg, sig2, nu = p.lr * p.gamma0, p.sigma**2, p.width_ratio
    res = []

    def rel(x: Array, y: Array) -> Array:
        x, y = jnp.where(mask, x, 0.0), jnp.where(mask, y, 0.0)
        return jnp.linalg.norm(x - y) / (jnp.linalg.norm(x) + jnp.linalg.norm(y) + 1e-300)

    def outer_mv(a: Array, m: Array, b: Array, vec: Array) -> Array:  # (a m bᵀ) v
        return a @ (m @ (b.T @ vec))

    L = depth
    for ell in range(1, L + 1):
        cin = s["Cq"] if ell == 1 else s["Ce"][ell - 1]
        P, Q, MM, FF = s["P"][ell], s["Q"][ell], s["MM"][ell], s["FF"][ell]
        if ell == L:
            Sr = p.sigma_readout**2 * jnp.ones((T, T))
            Qexp = eg * sl
        else:
            Sr = sig2 * s["Cg"][ell + 1]
            Qexp = s["B"][ell + 1] + eg * sl * s["Cg"][ell + 1]
        Pexp = s["A"][ell - 1] + eg * sl * cin
        res += [rel(Q @ v, Qexp @ v), rel(P @ v, Pexp @ v)]
        res.append(rel(MM @ v - Q @ (P @ (MM @ v)), v))
        res.append(rel(FF @ v - P @ (Q @ (FF @ v)), v))
        cg = MM @ (Sr @ (MM.T @ v)) + sig2 * outer_mv(MM @ Q, cin, MM @ Q, v)
        res.append(rel(s["Cg"][ell] @ v, cg))
        ce = sig2 * FF @ (cin @ (FF.T @ v)) + outer_mv(FF @ P, Sr, FF @ P, v)
        res.append(rel(s["Ce"][ell] @ v, ce))
        c_ell = nu if ell == 1 else 1.0
        res.append(rel(s["B"][ell] @ v, sig2 * c_ell * (MM @ (Q @ v))))
        if ell < L:
            res.append(rel(s["A"][ell] @ v, sig2 * (FF @ (P @ v))))
    P0, H, J = s["PD"], s["H"], s["J"]
    res.append(rel(P0 @ v, (s["B"][1] / (p.gamma0 * nu) + p.lr * sl * s["Cg"][1]) @ v))
    res.append(rel(J @ v + P0 @ (H @ (J @ v)), v))
    if not sgd:
        res.append(rel(s["R"] @ v, J @ (P0 @ v) / p.alpha))
        res.append(rel(H @ v + s["R"] @ (H @ v), v))
    HJ = H @ J
    res.append(rel(s["A"][0] @ v, -sig2 / (p.gamma0 * nu) * (HJ @ v)))
    init_var = sig2 / (p.gamma0**2 * nu)
    ones = jnp.where(mask, 1.0, 0.0)
    j1 = J @ ones
    cb = init_var * (J @ (s["Cg"][1] @ (J.T @ v))) + outer_mv(J @ P0, s["CD"], J @ P0, v) / p.alpha
    cb = cb + p.teacher_variance * j1 * (j1 @ v)
    res.append(rel(s["Cb"] @ v, cb))
    if sgd:
        cd = (jnp.diag(s["Cb"]) + p.noise**2) * v
    else:
        h1 = H @ ones
        cd = H @ (s["Cb"] @ (H.T @ v)) + p.noise**2 * h1 * (h1 @ v)
    res.append(rel(s["CD"] @ v, cd))
    Jp = I - HJ @ P0
    hj1 = HJ @ ones
    cq = outer_mv(Jp, s["CD"], Jp, v) / p.alpha + init_var * (HJ @ (s["Cg"][1] @ (HJ.T @ v)))
    cq = cq + p.teacher_variance * hj1 * (hj1 @ v)
    res.append(rel(s["Cq"] @ v, cq))
    return jnp.max(jnp.stack(res))


def solve(
    params: DeepLinearParams,
    steps: int,
    depth: int,
    sgd: bool = False,
    divergence_threshold: float = 1e6,
    check: bool = True,
) -> dict[str, Array]:
    """Solve the deep-linear DMFT for ``steps`` time points (t = 0..T−1). Pure and jit/vmap/grad-able.

    Returns a dict of arrays: ``test_loss``, ``train_loss`` (T,), every correlation (``Cb`` = C_β̃, ``CD`` = C_Δ,
    ``Cq``, ``Cg``/``Ce`` stacked over layers ℓ = 0..L with slot 0 unused, (L+1, T, T)) and response
    (``R``, ``H``, ``J``, ``P0``, ``A`` (slot 0 = A_0), ``B``, ``P``, ``Q``, ``MM`` = 𝕄, ``FF`` = 𝔽), plus
    ``diverged`` (bool), ``divergence_step`` (first t whose loss exceeded ``divergence_threshold``× its initial
    value or was not finite; ``steps`` if none) and ``residual`` (largest relative residual of the global equations
    on the valid block; NaN unless ``check``). Losses after ``divergence_step`` are NaN, flagged by ``diverged``.

    Parameters are cast to float64 arrays first, so Python floats and arrays share one compiled solver.
    """
    require_x64("solve")
    params = DeepLinearParams(*(jnp.asarray(x, dtype=jnp.float64) for x in params))
    threshold = jnp.asarray(divergence_threshold, dtype=jnp.float64)
    return _solve(params, steps, depth, sgd, threshold, check)


def block_ends(steps: int) -> list[int]:
    """Ends of the time blocks of the march. Rows in block k only touch the leading end_k × end_k corner, so
    marching block by block on growing arrays moves ~½ of the memory of a full-size march (4 blocks) at the
    price of one compiled loop body per block. Short horizons use a single block."""
    blocks = 1 if steps < 768 else 4
    return [round(steps * (k + 1) / blocks) for k in range(blocks)]


def _march(p: DeepLinearParams, steps: int, depth: int, sgd: bool) -> dict[str, Array]:
    """Run the row step for t = 0..T−1, block by block, on arrays that grow to T×T."""

    def body(state: dict[str, Array], t: Array) -> tuple[dict[str, Array], None]:
        return _row_step(state, t, p, depth, sgd), None

    start = 0
    state = None
    for end in block_ends(steps):
        if state is None:
            state = _empty_state(depth, end)
        else:
            grow = end - start
            state = jax.tree.map(lambda x, g=grow: jnp.pad(x, [(0, g)] * x.ndim), state)
        state, _ = jax.lax.scan(body, state, jnp.arange(start, end))
        start = end
    return state


@partial(jax.jit, static_argnames=("steps", "depth", "sgd", "check"))
def _solve(
    params: DeepLinearParams,
    steps: int,
    depth: int,
    sgd: bool = False,
    divergence_threshold: float = 1e6,
    check: bool = True,
) -> dict[str, Array]:
    p = params
    state = _march(p, steps, depth, sgd)
    test = 0.5 * (jnp.diag(state["Cb"]) + p.noise**2)
    train = 0.5 * jnp.diag(state["CD"])
    loss0 = initial_losses(p, depth)
    bad = ~jnp.isfinite(test) | ~jnp.isfinite(train) | (test > divergence_threshold * loss0)
    bad = bad | (train > divergence_threshold * loss0)
    first_bad = jnp.where(jnp.any(bad), jnp.argmax(bad), steps)
    valid = jnp.arange(steps) < first_bad
    out = {k: jnp.stack(v) if isinstance(v, tuple) else v for k, v in state.items()
           if k not in ("Sg", "Se", "Sb", "hj1", "PD")}
    out["P0"] = state["PD"]
    out["test_loss"] = jnp.where(valid, test, jnp.nan)
    out["train_loss"] = jnp.where(valid, train, jnp.nan)
    out["diverged"] = first_bad < steps
    out["divergence_step"] = first_bad
    out["residual"] = _residuals(state, p, depth, sgd, first_bad) if check else jnp.asarray(jnp.nan)
    return out


# --------------------------------------------------------------------------------------------------------------
# Config-level entry points
# --------------------------------------------------------------------------------------------------------------


def to_dataset(sol: dict[str, Array], cfg: Config, full: bool = True) -> xr.Dataset:
    """Package a solution as an xarray Dataset (dims ``t``, ``s`` for the second time, ``layer``)."""
    T = cfg.optim.steps
    L = cfg.model.depth
    t = np.arange(T)
    sol = {k: np.asarray(v) for k, v in sol.items()}
    L = cfg.model.depth
    ds = xr.Dataset(
        {
            "train_loss": ("t", sol["train_loss"]),
            "test_loss": ("t", sol["test_loss"]),
            "diverged": ((), bool(sol["diverged"])),
            "divergence_step": ((), int(sol["divergence_step"])),
            "residual": ((), float(sol["residual"])),
            "converged": ((), bool(np.isfinite(sol["residual"]) and sol["residual"] < cfg.solver.tol)),
        },
        coords={"t": t},
    )
    if full:
        two = ("t", "s")
        for name, key in (("C_beta", "Cb"), ("C_delta", "CD"), ("C_q", "Cq"), ("R", "R"), ("H", "H"),
                          ("J", "J"), ("P0", "P0")):
            ds[name] = (two, sol[key])
        ds["A_0"] = (two, sol["A"][0])
        lay = ("space", "t", "s")
        for name, key in (("C_g", "Cg"), ("C_e", "Ce"), ("B", "B"), ("P", "P"), ("Q", "Q"), ("M", "MM"),
                          ("F", "FF"), ("A", "A")):
            ds[name] = (lay, sol[key][1:])
        ds = ds.assign_coords(space=np.arange(1, L + 1), s=t)
        ds["A"].attrs["note"] = "A_ℓ for ℓ = 1..L−1; the row ℓ = L is unused (zero)"
    if "outlier_sv" in sol:
        valid = np.arange(T) < int(sol["divergence_step"])
        ds["outlier_sv"] = (("layer", "t", "k"), np.where(valid[None, :, None], sol["outlier_sv"], np.nan))
        ds["outlier_sv"].attrs.update(
            long_name="outlier singular values of M^layer after t steps (NaN: no outlier, or not evaluated)",
            note="M⁰ = W⁰/√D, M^ℓ = W^ℓ/√N; level 2 of the two-level DMFT")
        ds["bulk_edge"] = ("layer", sol["bulk_edge"])
        ds["n_outliers"] = (("layer", "t"), sol["n_outliers"])
        ds["n_outliers"].attrs["note"] = "−1 at steps where level 2 was not evaluated"
        ds["outlier_evaluated"] = ("t", sol["outlier_evaluated"])
        ds["outlier_evaluated"].attrs["note"] = "steps at which level 2 was evaluated (solver.outlier_every)"
        born = np.isfinite(ds["outlier_sv"].values)
        first = np.where(born.any(axis=1), born.argmax(axis=1), -1)
        ds["escape_step"] = (("layer", "k"), first)
        ds["escape_step"].attrs["note"] = "first step at which outlier k is above the bulk edge (−1: never)"
        ds["gram_consistency"] = ("layer", sol["gram_consistency"])
        ds["outliers_converged"] = ("layer", sol["outliers_converged"])
        ds = ds.assign_coords(layer=np.arange(L), k=np.arange(sol["outlier_sv"].shape[-1]))
    ds["test_loss"].attrs.update(long_name="test loss", formula="½(C_β̃(t,t) + σ_ε²)")
    ds["train_loss"].attrs.update(long_name="train loss", formula="½ C_Δ(t,t)")
    if bool(sol["diverged"]):
        warnings.warn(
            f"deep_linear DMFT diverged at step {int(sol['divergence_step'])} (lr = {cfg.optim.lr} is past "
            "stability): losses after that step are NaN and 'diverged' is set",
            RuntimeWarning,
            stacklevel=3,
        )
    return ds


def _level2(sol: dict[str, Array], p: DeepLinearParams, depth: int, k_max: int, steps: np.ndarray) -> dict[str, Array]:
    """Outliers of every weight matrix at the given steps (spectra.md), stacked over layers and scattered onto
    t = 0..T−1 (NaN, n_outliers = −1 and ``outlier_evaluated`` False at the other steps)."""
    from .spectra import layer_outliers

    T = sol["test_loss"].shape[-1]
    outs = [layer_outliers(sol, p, layer, depth, k_max, steps) for layer in range(depth)]
    sv = jnp.full((depth, T, k_max), jnp.nan).at[:, steps].set(jnp.stack([o.sv for o in outs]))
    n_out = jnp.full((depth, T), -1).at[:, steps].set(jnp.stack([o.n_outliers for o in outs]))
    return {
        "outlier_sv": sv,
        "outlier_evaluated": jnp.zeros(T, dtype=bool).at[steps].set(True),
        "bulk_edge": jnp.stack([o.edge[0] for o in outs]),
        "n_outliers": n_out,
        "outliers_converged": jnp.stack([jnp.all(o.converged) for o in outs]),
        "gram_consistency": jnp.stack([jnp.nanmax(o.consistency) for o in outs]),
    }


def _level2_steps(cfg: Config) -> np.ndarray:
    """Level-2 steps from ``solver.outlier_every``, including the steps at which the twin records spectra."""
    from .problem import spectrum_steps
    from .spectra import level2_steps

    return level2_steps(cfg.optim.steps, cfg.solver.outlier_every, spectrum_steps(cfg))


def _wants_level2(cfg: Config) -> bool:
    return cfg.solver.outliers


def solve_config(cfg: Config) -> xr.Dataset:
    """Theory for one config (family ``deep_linear``): level 1, and level 2 (outliers) for full-batch GD."""
    p = params_from_config(cfg)
    sol = solve(
        p,
        cfg.optim.steps,
        cfg.model.depth,
        sgd=cfg.optim.batch_ratio is not None,
        divergence_threshold=cfg.solver.divergence_threshold,
    )
    if _wants_level2(cfg):
        sol.update(_level2(sol, p, cfg.model.depth, cfg.solver.max_outliers, _level2_steps(cfg)))
    return to_dataset(sol, cfg)


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

    def one(p: DeepLinearParams, th: Array) -> dict[str, Array]:
        sol = solve(p, first.optim.steps, first.model.depth, sgd, th)
        if level2:
            sol.update(_level2(sol, p, first.model.depth, first.solver.max_outliers, steps2))
        return sol

    sols = jax.vmap(one)(stacked, thresholds)
    return [to_dataset(jax.tree.map(lambda x, i=i: x[i], sols), c) for i, c in enumerate(cfgs)]
