"""Sharpness from theory (edge_of_stability.md §11): exact identities, the bulk against dense spectra, the
reference run and the μP/NTK width table of §7, and the estimates of §8 that the theory must not reduce to."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dmft.families.deep_linear._kernel_bulk import bulk_edge, bulk_scalars, lazy_edge, stieltjes
from dmft.families.deep_linear._kernel_outliers import (
    _consts,
    level1_from_solution,
    star_layout,
    star_matrix,
    star_matrix_from_map,
    step_operators,
)
from dmft.families.deep_linear.kernel import kernel_spectrum
from dmft.families.deep_linear.problem import lazy_kappa
from dmft.families.deep_linear.theory import DeepLinearParams, solve

REF = dict(lr=0.1, gamma0=3.0, width_ratio=2.0, sigma=0.6, sigma_readout=1.0, alpha=2.0, noise=0.0,
           teacher_variance=1.0)


def params(**kw: float) -> DeepLinearParams:
    d = {**REF, **kw}
    return DeepLinearParams(*(jnp.asarray(d[f], dtype=jnp.float64) for f in DeepLinearParams._fields))


# ---------------------------------------------------------------------------------------------------------------
# Exact identities
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_edge_tends_to_the_lazy_value(depth: int) -> None:
    """ν → ∞ at t = 0: the edge is κ(1 + α^{−1/2})² with κ = Lσ^{2(L−1)}σ_w² + σ^{2L} (§3 check)."""
    sigma, sw, alpha = 0.6, 1.0, 2.0
    kappa = jnp.asarray([sigma ** (2 * (depth - ell)) * sw**2 for ell in range(1, depth + 1)])  # C_g^ℓ(0,0)
    edge, _ = bulk_edge(kappa, sigma, 1e8, alpha)
    expect = lazy_edge(lazy_kappa(depth, sigma, sw), alpha)
    assert float(edge) == pytest.approx(expect, rel=1e-6)


def test_edge_at_t0_against_the_width_table() -> None:
    """Finite-ν edges at t = 0 (§3 table), all above the lazy value 2.476."""
    kappa = jnp.asarray([0.36, 1.0])
    table = {0.5: 4.656, 1: 3.622, 2: 3.070, 4: 2.780, 8: 2.630}
    got = {nu: float(bulk_edge(kappa, 0.6, nu, 2.0)[0]) for nu in table}
    assert got == pytest.approx(table, abs=6e-4)


def test_bulk_stieltjes_against_dense_spectrum(key: jax.Array) -> None:
    """m(λ) = P⁻¹tr(λ − K̃)⁻¹ of the nested Silverstein law against a dense K̃(0) (L = 2, D = 300, ν = 0.5),
    at 1.2× and 2× the edge, with the realised κ_ℓ. Trace fluctuations are O(1/P) (1.7e-3 here); a law 3 % off
    fails by an order of magnitude."""
    D, nu, alpha, sigma, sw = 300, 0.5, 2.0, 0.6, 1.0
    N, P = int(nu * D), int(alpha * D)
    k0, k1, k2, k3 = jax.random.split(key, 4)
    M0 = sigma * jax.random.normal(k0, (N, D)) / math.sqrt(D)
    M1 = sigma * jax.random.normal(k1, (N, N)) / math.sqrt(N)
    w = sw * jax.random.normal(k2, (N,))
    X = jax.random.normal(k3, (P, D))
    g1 = M1.T @ w
    kappa = jnp.asarray([g1 @ g1 / N, w @ w / N])
    A1 = kappa[1] * jnp.eye(N) + M1.T @ M1
    Khat = kappa[0] * jnp.eye(D) + M0.T @ A1 @ M0 / nu
    ev = jnp.linalg.eigvalsh(X @ Khat @ X.T / P)
    edge, _ = bulk_edge(kappa, sigma, nu, alpha)
    for factor in (1.2, 2.0):
        lam = factor * edge
        dense = jnp.mean(1 / (lam - ev))
        assert float(stieltjes(lam, kappa, sigma, nu, alpha)) == pytest.approx(float(dense), rel=2e-3)


@pytest.mark.parametrize("depth", [2, pytest.param(1, marks=pytest.mark.slow), pytest.param(3, marks=pytest.mark.slow)])
def test_star_matrix_blockwise_equals_map(depth: int) -> None:
    """𝔄 assembled blockwise equals 𝔄 from applying the star map to unit vectors, training and fresh inputs,
    at a masked step (t < b) and at the spectral parameters of the edge and above."""
    p = params(noise=0.3)
    sol = solve(p, 7, depth)
    l1 = level1_from_solution(sol, p, depth)
    c = _consts(p)
    kappa = jnp.stack([sol.C_g[ell][5, 5] for ell in range(1, depth + 1)])
    ops = step_operators(l1, 7, 5, depth)
    _, a_e = bulk_edge(kappa, p.sigma, p.width_ratio, p.alpha)
    for fresh in (False, True):
        layout = star_layout(ops, c, depth, fresh)
        for A in (0.3 * a_e, 0.9 * a_e):
            bs = bulk_scalars(A, kappa, p.sigma, p.width_ratio, p.alpha)
            blockwise = star_matrix(layout, bs, c, depth, fresh)
            by_map = star_matrix_from_map(ops, bs, c, depth, fresh)
            assert float(jnp.max(jnp.abs(by_map))) > 1e-2
            np.testing.assert_allclose(blockwise, by_map, rtol=0, atol=1e-13 * float(jnp.max(jnp.abs(by_map))))


def test_level1_maps_reproduce_the_solver() -> None:
    """The linear maps used for C_qβ̃ and C_ge^ℓ reproduce the solver's own C_q, C_β̃ and C_g^ℓ (the same maps
    squared), so the cross covariances rest on the same algebra."""
    p = params(noise=0.3)
    depth = 2
    sol = solve(p, 8, depth)
    H, J, P0 = sol.H, sol.J, sol.P0
    HJ = H @ J
    Jp = jnp.eye(8) - HJ @ P0
    ones = jnp.ones(8)
    init = p.sigma**2 / (p.gamma0**2 * p.width_ratio)
    cq = Jp @ sol.C_delta @ Jp.T / p.alpha + init * HJ @ sol.C_g[1] @ HJ.T + jnp.outer(HJ @ ones, HJ @ ones)
    np.testing.assert_allclose(cq, sol.C_q, atol=1e-10)
    l1 = level1_from_solution(sol, p, depth)
    for ell in (1, 2):
        c_in = sol.C_q if ell == 1 else sol.C_e[ell - 1]
        sig_r = jnp.outer(ones, ones) * p.sigma_readout**2 if ell == depth else p.sigma**2 * sol.C_g[ell + 1]
        M, Q = sol.M[ell], sol.Q[ell]
        cg = M @ (sig_r + p.sigma**2 * Q @ c_in @ Q.T) @ M.T
        np.testing.assert_allclose(cg, sol.C_g[ell], atol=1e-10)
        assert l1.C_ge[ell].shape == (8, 8)


# ---------------------------------------------------------------------------------------------------------------
# The reference run (§9) and the width table (§7)
# ---------------------------------------------------------------------------------------------------------------

# edge_of_stability.md §2, §6, §8 (printed to 3 decimals): the reference run, t = 0, 2, 3, 5, 10
REF_STEPS = np.array([0, 1, 2, 3, 5, 10])
REF_SHARP = {0: 3.070, 2: 5.005, 3: 9.466, 5: 15.843, 10: 17.444}
REF_EDGE = {0: 3.070, 2: 4.668, 3: 7.617, 5: 12.639, 10: 15.212}
REF_FRESH = {3: 7.731, 5: 13.486, 10: 16.516}


@pytest.fixture(scope="module")
def reference() -> tuple:
    p = params()
    sol = solve(p, 11, 2)
    return p, sol, kernel_spectrum(sol, p, 2, REF_STEPS), kernel_spectrum(sol, p, 2, REF_STEPS, fresh=True)


def test_no_outlier_at_t0_or_t1(reference: tuple) -> None:
    """K̃(0) has no outlier (sharpness(0) is the bulk edge); in the reference run the first one is born at t = 2."""
    _, _, ks, kf = reference
    assert np.asarray(ks.n_outliers)[:2].tolist() == [0, 0]
    assert float(ks.sharpness[0]) == float(ks.edge[0])
    assert np.all(np.asarray(ks.n_outliers)[2:] == 1)
    assert np.all(np.asarray(ks.converged)) and np.all(np.asarray(kf.converged))


def test_reference_run(reference: tuple) -> None:
    """sharpness, moving edge and fresh-input outlier against the note (its printed precision, ±6e-4)."""
    _, _, ks, kf = reference
    at = {int(t): i for i, t in enumerate(REF_STEPS)}
    for table, values in ((REF_SHARP, ks.sharpness), (REF_EDGE, ks.edge), (REF_FRESH, kf.sharpness)):
        got = {t: float(values[at[t]]) for t in table}
        assert got == pytest.approx(table, abs=6e-4)


def test_failing_estimates_are_not_the_theory(reference: tuple) -> None:
    """§8: the lazy edge, the edge alone, the fresh-input kernel and κ held at κ(0) are each ≥ 5 % off the
    theory at some step (the twin tests check which one the network follows)."""
    p, sol, ks, kf = reference
    sharp = np.asarray(ks.sharpness)
    lazy = lazy_edge(lazy_kappa(2, 0.6, 1.0), 2.0)
    frozen = float(bulk_edge(jnp.asarray([sol.C_g[1][0, 0], sol.C_g[2][0, 0]]), 0.6, 2.0, 2.0)[0])
    for estimate in (np.full_like(sharp, lazy), np.asarray(ks.edge), np.asarray(kf.sharpness),
                     np.full_like(sharp, frozen)):
        assert np.max(np.abs(estimate / sharp - 1)) > 0.05


WIDTH_TABLE = {  # §7: (parameterization, ν) -> sharpness at t = 0, 3, 5, 10
    ("mup", 0.5): (4.656, 8.786, 15.339, 17.077),
    ("mup", 8.0): (2.630, 9.741, 15.918, 17.619),
    ("ntk", 4.0): (2.780, 5.183, 9.376, 11.343),
    ("ntk", 8.0): (2.630, 3.591, 5.382, 7.463),
}


@pytest.mark.slow
def test_mup_ntk_width_table() -> None:
    """μP is width-stable after a few steps, NTK is not; values of §7 at t = 0, 3, 5, 10, and the NTK crossing of
    2/η at t = 3 for ν = 0.5 (58.33)."""
    steps = np.array([0, 3, 5, 10])
    for (param, nu), row in WIDTH_TABLE.items():
        g0 = 3.0 if param == "mup" else 3.0 * math.sqrt(2.0) / math.sqrt(nu)
        p = params(width_ratio=nu, gamma0=g0)
        ks = kernel_spectrum(solve(p, 11, 2), p, 2, steps, k_max=1)
        assert np.asarray(ks.sharpness) == pytest.approx(np.asarray(row), abs=1.5e-3), (param, nu)
    p = params(width_ratio=0.5, gamma0=6.0)
    ks = kernel_spectrum(solve(p, 11, 2), p, 2, np.array([3]), k_max=1)
    assert float(ks.sharpness[0]) == pytest.approx(58.33, abs=0.01)
    assert 0.1 * float(ks.sharpness[0]) / 2 > 1  # past the edge of stability
