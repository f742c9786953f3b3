"""Edge of stability at the config level: result variables and masking past 2/η, the twin's Lanczos variables,
and the learning rates from theory (``eos_lr``, ``optimal_lr``) against the shipped grid sweep."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

from dmft._jax import float64
from dmft.config import load_config
from dmft.families.deep_linear import FAMILY
from dmft.families.deep_linear.kernel import eos_lr, optimal_lr
from dmft.families.deep_linear.theory import params_from_config, solve, solve_config


def _cfg(**over: object):
    base = {"model.depth": 2, "model.width_ratio": 0.5, "model.gamma0": 3.0, "model.sigma": 0.6,
            "model.sigma_readout": 1.0, "model.parameterization": "ntk", "data.alpha": 2.0, "data.noise": 0.0,
            "optim.lr": 0.1, "optim.steps": 6, "solver.sharpness": True, "solver.kernel": "both",
            "simulate.dim": 24, "simulate.seeds": 2}
    return load_config(None, {**base, **over})


def test_theory_variables_and_nothing_past_the_crossing() -> None:
    """NTK at ν = 0.5 (γ̃0 = 3√2 → γ0 = 6) crosses 2/η = 20 at t = 3 (§7: 58.33): eos_step = 3, values after it
    NaN, eos_ratio = η·sharpness/2 before it, long names on every new variable."""
    cfg = _cfg(**{"model.gamma0": 3.0 * math.sqrt(2.0)})
    with float64():
        ds = solve_config(cfg)
    assert int(ds["eos_step"]) == 3 and bool(ds["eos_crossed"])
    sharp = ds["sharpness"].values
    assert sharp[3] == pytest.approx(58.33, abs=0.01)
    assert np.all(np.isnan(sharp[4:])) and np.all(np.isnan(ds["sharpness_fresh"].values[4:]))
    np.testing.assert_allclose(ds["eos_ratio"].values[:4], 0.1 * sharp[:4] / 2)
    assert bool(ds["kernel_converged"])
    for name in ("sharpness", "kernel_edge", "kernel_outliers", "sharpness_fresh", "eos_ratio", "eos_step"):
        assert "long_name" in ds[name].attrs, name
    assert "solver.sharpness" in FAMILY.keys and "solver.kernel" in FAMILY.keys


def test_twin_records_lanczos_sharpness() -> None:
    from dmft.families.deep_linear.twin import simulate_config

    with float64():
        over = {"model.parameterization": "mup", "optim.lr": 0.05, "simulate.record_spectra": False}
        sim = simulate_config(_cfg(**over))
    for name in ("kernel_top", "kernel_second", "kernel_top_fresh"):
        assert sim[name].dims == ("seed", "t") and np.all(np.isfinite(sim[name].values))
    assert np.all(sim["kernel_top"].values >= sim["kernel_second"].values - 1e-10)


@pytest.mark.slow
def test_optimal_lr_against_the_lr_transfer_grid(repo_root) -> None:
    """Gradient-based η* (Adam on log η through the solver) beats every point of the shipped lr grid and lies
    between the grid neighbours of the grid's best η (configs/sweeps/lr_transfer.toml, μP and NTK at ν = 1)."""
    base = load_config(repo_root / "configs" / "sweeps" / "lr_transfer.toml")
    lrs = dict(base.sweep)["optim.lr"]
    for param in ("mup", "ntk"):
        cfg = base.replace({"model.width_ratio": 1.0, "model.parameterization": param}).replace({})
        with float64():
            p = params_from_config(cfg)
            losses = []
            for lr in lrs:
                sol = solve(p._replace(lr=jnp.asarray(lr)), cfg.optim.steps, cfg.model.depth)
                losses.append(float(sol.test_loss[-1]) if not bool(sol.diverged) else np.inf)
            i = int(np.argmin(losses))
            lr_star, loss_star = optimal_lr(p, cfg.model.depth, cfg.optim.steps, lrs[i])
        assert loss_star <= min(losses) * (1 + 1e-9)
        assert lrs[max(i - 1, 0)] <= lr_star <= lrs[min(i + 1, len(lrs) - 1)]


@pytest.mark.slow
def test_eos_lr_against_the_note() -> None:
    """η* of §7 (μP, ν = 2, T = 40): the largest η with η·max_t sharpness < 2 lies in 0.1088–0.1094."""
    cfg = _cfg(**{"model.parameterization": "mup", "model.width_ratio": 2.0, "optim.steps": 41})
    with float64():
        lo, hi = eos_lr(params_from_config(cfg), 2, 41, 0.104, 0.114, rtol=2e-3)
    assert 0.1085 < lo < hi < 0.1097
