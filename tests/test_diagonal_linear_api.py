"""Diagonal linear family through the library surface: configs, Datasets, batches under one compile,
divergence, oracles as library functions, figures and the CLI."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dmft
import dmft.api
from dmft.config import ConfigError
from dmft.families import diagonal_linear as dl
from dmft.families.diagonal_linear import figures as dlf

SMALL = {
    "model.family": "diagonal_linear",
    "model.init_scale": 0.3,
    "data.alpha": 0.5,
    "data.noise": 0.1,
    "data.prior": "sparse",
    "optim.lr": 0.1,
    "optim.steps": 20,
    "solver.samples": 400,
    "solver.replicas": 4,
    "simulate.dim": 200,
    "simulate.seeds": 2,
}


@pytest.fixture(scope="module")
def theory_and_twin():
    cfg = dmft.load_config(None, SMALL)
    return cfg, dmft.api.solve(cfg), dmft.api.simulate(cfg)


def test_dataset_contract(theory_and_twin):
    cfg, th, sim = theory_and_twin
    T = cfg.optim.steps
    for name in (
        "train_loss",
        "test_loss",
        "train_loss_mcse",
        "test_loss_mcse",
        "test_loss_lazy",
        "test_loss_small_init",
    ):
        assert th[name].dims == ("t",) and th[name].dtype == np.float64 and th.sizes["t"] == T
    assert th["C_beta"].dims == ("t", "s") and th["beta"].dims == ("t_snap", "i")
    assert bool(th["converged"]) and float(th["residual"]) < 1e-12 and not bool(th["diverged"])
    assert th["test_loss"].values[0] == pytest.approx(0.5 * (1 + 0.01), abs=1e-12)
    # nothing learnt at t = 0: the residual is y = Xβ*/√d + ε, so train = ½(ρ* + σ_ε²) exactly (H(0,0) = 1)
    assert th["train_loss"].values[0] == pytest.approx(0.5 * (1 + 0.01), abs=1e-12)
    assert np.all(th["test_loss_mcse"].values[1:] > 0) and np.isfinite(float(th["test_loss_fixed_point"]))
    assert (
        sim["test_loss"].dims == ("seed", "t") and sim.sizes["seed"] == 2 and sim["beta"].dims[1] == "t_snap"
    )
    # dmft.results.record_steps: 0, k, 2k, … and the last step, the same steps for theory and twin
    assert list(th["t_snap"].values) == list(sim["t_snap"].values) == [0, 4, 8, 12, 16, 19]
    assert th.attrs["model.family"] == "diagonal_linear"


def test_figures(theory_and_twin):
    import matplotlib.pyplot as plt

    _, th, sim = theory_and_twin
    figs = dlf.figures(th, sim)
    assert set(figs) == {"losses", "losses_rescaled", "beta_hist", "order_parameters"}
    assert set(dlf.figures(None, sim)) == {"losses", "losses_rescaled", "beta_hist"}
    for f in figs.values():
        plt.close(f)


def test_sweep_over_init_scale_is_one_compile(tmp_path):
    """Points differing in vmappable keys share one compiled solver; results equal the one-config solves."""
    cfg = dmft.load_config(None, {**SMALL, "sweep.init_scale": [0.1, 1.0], "solver.replicas": 0})
    grid = dmft.api.sweep(cfg, out_dir=tmp_path, progress=False)
    assert grid.sizes["init_scale"] == 2
    n = dl._solve.solve_arrays_batch._cache_size()
    grid2 = dmft.api.sweep(cfg.replace({"sweep.init_scale": [0.2, 0.5]}), progress=False)
    assert dl._solve.solve_arrays_batch._cache_size() == n  # new values, no recompile
    one = dmft.api.solve(cfg.replace({"model.init_scale": 1.0}))
    np.testing.assert_allclose(
        grid["test_loss"].sel(init_scale=1.0).values, one["test_loss"].values, rtol=1e-10
    )
    assert not np.allclose(grid2["test_loss"].isel(init_scale=0), grid2["test_loss"].isel(init_scale=1))
    figs = dlf.sweep_figures(grid)
    assert set(figs) == {"losses_vs_init", "plateaus", "final_error_vs_init", "late_rate_vs_init"}


def test_theory_flags_divergence():
    cfg = dmft.load_config(None, {**SMALL, "model.init_scale": 3.0, "optim.lr": 0.5, "solver.replicas": 0})
    with pytest.warns(RuntimeWarning, match="diverged at step"):
        th = dmft.api.solve(cfg)
    step = int(th["divergence_step"])
    assert bool(th["diverged"]) and not bool(th["converged"]) and 0 < step < cfg.optim.steps
    # one convention (dmft.results): the loss at the divergence step is shown, every value after it is NaN
    assert np.isnan(th["test_loss"].values[step + 1 :]).all() and np.isfinite(th["test_loss"].values[:step]).all()
    assert np.isnan(th["C_beta"].values[step + 1 :]).all() and np.isnan(th["C_beta"].values[:, step + 1 :]).all()


def test_cli_run_writes_result_and_figures(tmp_path, repo_root):
    from dmft.cli import main

    cfg_path = tmp_path / "dl.toml"
    cfg_path.write_text((repo_root / "configs" / "diagonal_linear.toml").read_text())
    out = tmp_path / "out"
    args = [
        "run",
        str(cfg_path),
        "--out",
        str(out),
        "--set",
        "optim.steps=20",
        "--set",
        "solver.samples=400",
        "--set",
        "solver.replicas=4",
        "--set",
        "simulate.snapshots=[0, 19]",
    ]
    assert main(args) == 0
    assert (out / "result.nc").exists() and (out / "losses.png").exists() and (out / "beta_hist.png").exists()


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"model.form": "uvw"}, "model.form"),
        ({"data.prior": "laplace"}, "data.prior"),
        ({"data.sparsity": 0.0}, "data.sparsity"),
        ({"data.sparsity": 1.5}, "data.sparsity"),
        ({"solver.replicas": 1}, "solver.replicas"),
        ({"solver.samples": 8}, "solver.samples"),
        ({"solver.response": "finite_differences"}, "solver.response"),
        ({"solver.damping": 0.0}, "solver.damping"),
        ({"simulate.snapshots": [0, 20]}, "simulate.snapshots"),
        ({"data.prior": "sparse", "data.sparsity": 0.01}, "data.sparsity"),
        ({"model.init_scale": -1.0}, "model.init_scale"),
        ({"optim.weight_decay": "big"}, "optim.weight_decay"),
    ],
)
def test_bad_parameters_are_rejected_in_one_line(override, key):
    with pytest.raises(ConfigError) as err:
        dmft.load_config(None, {**SMALL, **override})
    msg = str(err.value)
    assert key in msg and "\n" not in msg


@settings(max_examples=25, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: not 0 < x <= 1))
def test_sparsity_outside_unit_interval_is_rejected(x):
    with pytest.raises(ConfigError, match="data.sparsity"):
        dmft.load_config(None, {**SMALL, "data.sparsity": x})


def test_oracles_are_consistent_closed_forms():
    """Library oracles against independent closed forms: ℓ2 limit of the fixed point, the Donoho–Tanner
    boundary of its ℓ1 limit, the MP edge of the late-time rate, the lazy curve's t → ∞ limit, the escape
    time."""
    p = dl.Params(
        lr=0.01, init_scale=50.0, alpha=0.5, noise=0.3, weight_decay=0.0, teacher_variance=1.0, sparsity=0.2
    )
    l2 = (1 - 0.5) * 1.0 + 0.09 * 0.5 / (1 - 0.5)
    assert float(dl.fixed_point(p, "uv", "gaussian").error) == pytest.approx(l2, rel=1e-6)
    test, train = dl.lazy_curves(p._replace(lr=0.2 / 2500), "uv", 3000)
    assert 2 * float(test[-1]) - 0.09 == pytest.approx(l2, rel=1e-6) and float(train[-1]) < 1e-12
    # a → 0, no noise, α = 0.5: ℓ1 recovers a k/d = 0.1-sparse teacher exactly, not a 0.3-sparse one (the weak
    # Donoho–Tanner threshold at δ = 0.5 is k/d ≈ 0.19).
    q = p._replace(init_scale=1e-4, noise=0.0)
    assert float(dl.fixed_point(q._replace(sparsity=0.1), "uv", "sparse").error) < 1e-6
    assert float(dl.fixed_point(q._replace(sparsity=0.3), "uv", "sparse").error) > 0.05
    # λ_min with a constant metric m = a² is the MP edge a²(1 − 1/√α)² (α = 0.5: all β_∞ tiny against a² =
    # 2500).
    lam = float(dl.late_time_rate(dl.fixed_point(p, "uv", "gaussian"), p, "uv"))
    assert lam == pytest.approx(2500 * (1 - np.sqrt(2)) ** 2, rel=1e-3)
    # prox: the root of its defining equation.
    x, k, a = np.linspace(-5, 5, 11), 0.7, 0.1
    b = np.asarray(dl.prox_hyperbolic(x, k, a))
    np.testing.assert_allclose((b - x) / k + 0.5 * np.arcsinh(2 * b / a**2), 0, atol=1e-10)
    # Escape time: β = (a²/2) sinh(2gτ) reaches 1 at τ = arcsinh(2/a²)/(2g) → log(1/a)/g as a → 0.
    r = dl.escape_time(2.0, p._replace(init_scale=1e-8), "uv") / (np.log(1e8) / 2.0)
    assert float(r) == pytest.approx(1.0, abs=0.05)


def test_picard_reports_non_convergence():
    """Too few Picard iterations: converged False, the residual history in the Dataset, and a warning."""
    cfg = dmft.load_config(
        None, {**SMALL, "solver.method": "picard", "solver.iterations": 3, "solver.replicas": 0}
    )
    with pytest.warns(RuntimeWarning, match="not converged"):
        th = dmft.api.solve(cfg)
    assert not bool(th["converged"]) and float(th["residual"]) > cfg.solver.tol
    assert th.sizes["iteration"] == 3 and np.all(np.diff(th["residual_history"].values) < 0)
