"""Extensive outputs, theory: exact limits (t = 0 Marchenko–Pastur, t = 1 of the ν = ∞ recursion, lazy limit),
agreement of the two edge algorithms, α → ∞, and the t = 0 loss oracle."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from dmft.config import Config
from dmft.families.extensive_output import FAMILY
from dmft.families.extensive_output import ExtensiveOutputSection as Section
from dmft.families.extensive_output import _dyson as dy
from dmft.families.extensive_output import _infinite as inf
from dmft.families.extensive_output import _laws as laws
from dmft.families.extensive_output.problem import Hyper, initial_test_loss
from dmft.families.extensive_output.theory import solve_config

H = Hyper(0.05, 3.0, 2.0, 1.0, 0.6, 1.0, 1.0, 0.0, float("inf"))
SIGMA_CFG = {"model.width_ratio": 2.0, "model.gamma0": 3.0, "model.sigma": 0.6, "model.sigma_readout": 1.0,
             "optim.lr": 0.05, "optim.steps": 11, "simulate.spectrum_every": 5}


def test_dyson_at_t0_is_marchenko_pastur():
    """t = 0: v ≡ σ², so the density is MP(ν, σ) and the Silverstein edge is σ(1 + √ν) exactly."""
    rows = laws.row_law(H.nu, H.kappa, H.sigma_w, 400)
    data = laws.point_law(1.0)
    v = dy.variance_profile(rows.nodes, data.nodes, jnp.asarray(0.0), H)
    x_edge = dy.silverstein_edge(v[:, 0], rows.weights, H.nu)
    assert abs(float(jnp.sqrt(x_edge)) - 0.6 * (1 + np.sqrt(2.0))) < 1e-9
    spec = dy.density_on_grid(v, rows, data, H.nu, jnp.sqrt(x_edge), 200)
    s = np.asarray(spec.grid)  # MP of MᵀM: x± = σ²(√ν ± 1)², density √((x₊ − x)(x − x₋))/(2πσ²x)
    lo, hi = 0.36 * (np.sqrt(2) - 1) ** 2, 0.36 * (np.sqrt(2) + 1) ** 2
    x = np.maximum(s**2, 1e-300)
    exact = 2 * s * np.sqrt(np.clip((hi - x) * (x - lo), 0, None)) / (2 * np.pi * 0.36 * x)
    assert np.max(np.abs(np.asarray(spec.density) - exact)) < 2e-3 * exact.max()
    assert abs(float(spec.mass) - 1) < 1e-3


def test_fold_edge_equals_silverstein_critical_point():
    """The finite-α edge algorithm (fold of the real branch) on λ ≡ 1 reproduces Silverstein's exact edge."""
    rows = laws.row_law(H.nu, H.kappa, H.sigma_w, 300)
    data = laws.point_law(1.0)
    for t in (5.0, 20.0):
        v = dy.variance_profile(rows.nodes, data.nodes, jnp.asarray(t), H)
        exact = float(dy.silverstein_edge(v[:, 0], rows.weights, H.nu))
        fold, ok = dy.fold_edge(v, rows, data, H.nu)
        assert bool(ok) and abs(float(fold) / exact - 1) < 1e-8


@pytest.mark.slow
def test_finite_alpha_tends_to_population():
    """α = 10⁴ (no noise): edge and quantiles within 1e-3 of the population solution (correction O(α^{-1/2}))."""
    cfg = Config().replace({**SIGMA_CFG, "data.alpha": 1e4, "data.noise": 0.0})
    small = {"quad_rows": 200, "grid": 120, "readout": "frozen"}
    pop = solve_config(cfg, Section(**small))
    fin = solve_config(cfg, Section(**small, population=False, quad_data=12))
    np.testing.assert_allclose(fin.edge.values, pop.edge.values, rtol=2e-3)
    np.testing.assert_allclose(fin.quantiles.values, pop.quantiles.values, rtol=2e-3)
    np.testing.assert_allclose(fin.test_loss.values, pop.test_loss.values, rtol=1e-3)


def test_initial_losses_match_oracle():
    cfg = Config().replace({**SIGMA_CFG, "data.alpha": 2.0, "data.noise": 0.3})
    th = solve_config(cfg, Section(readout="frozen", population=False, quad_rows=100, quad_data=8, grid=64))
    h = Hyper(0.05, 3.0, 2.0, 1.0, 0.6, 1.0, 1.0, 0.3, 2.0)
    assert abs(float(th.test_loss[0]) - initial_test_loss(h)) < 1e-12
    assert abs(float(th.train_loss[0]) - initial_test_loss(h)) < 1e-12
    assert bool(th.converged)


def test_infinite_width_first_step_closed_form():
    """One step of the ν = ∞ recursion: a₁ = ηb(σ² + σ_w²), k₁ = σ² + η²γ0²b²σ_w², h₁ = σ_w² + η²γ0²b²σ²;
    the edge after one step is √k₁(b_max), b_max = √ρ*(1 + √κ)."""
    b = jnp.linspace(0.0, 2.0, 5)
    m = inf.modes(b, 0.05, 3.0, 0.6, 1.0, 3)
    np.testing.assert_allclose(m.a[1], 0.05 * b * 1.36, rtol=1e-14)
    np.testing.assert_allclose(m.k[1], 0.36 + 0.05**2 * 9 * b**2, rtol=1e-14)
    np.testing.assert_allclose(m.h[1], 1.0 + 0.05**2 * 9 * b**2 * 0.36, rtol=1e-14)
    cfg = Config().replace({**SIGMA_CFG, "optim.steps": 2, "simulate.spectrum_every": 1})
    th = solve_config(cfg, Section(units="width", quad_rows=200))
    assert abs(float(th.edge.sel(t_spec=1)) - np.sqrt(0.36 + 0.05**2 * 9 * 4.0)) < 1e-12
    assert float(th.atom) == 0.0


def test_small_gamma0_mup_is_lazy_and_ntk_is_lazy():
    """μP at γ0 → 0 follows the frozen kernel σ² + σ_w² (per-channel loss ½ρ*(1 − η(σ² + σ_w²))^{2t}); the
    NTK ν = ∞ limit keeps the spectrum at σ and has the lazy loss oracle."""
    cfg = Config().replace({**SIGMA_CFG, "model.gamma0": 1e-4})
    th = solve_config(cfg, Section(units="width", quad_rows=300))
    t = np.arange(11)
    np.testing.assert_allclose(th.test_loss.values, 0.5 * (1 - 0.05 * 1.36) ** (2 * t), rtol=1e-6)
    np.testing.assert_allclose(th.quantiles.values, 0.6, rtol=1e-6)
    ntk = solve_config(Config().replace({**SIGMA_CFG, "model.parameterization": "ntk"}), Section(units="width"))
    np.testing.assert_allclose(ntk.edge.values, 0.6)
    lazy = FAMILY.oracles["lazy_test_loss"](lr=0.05, gamma0=3.0, sigma=0.6, sigma_w=1.0, rho=1.0, steps=11)
    np.testing.assert_allclose(ntk.test_loss.values, np.asarray(lazy))
    assert abs(float(ntk.test_loss[0]) - 0.5 * (1 + 0.36 / 9)) < 1e-12
