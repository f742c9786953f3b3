"""The mean-field family through the user's surface: dmft.solve/simulate/sweep and the CLI (run, simulate,
compare, sweep, plot), Dataset variables of the contract, μP/NTK mapping, warnings and one-line errors."""

import numpy as np
import pytest
import xarray as xr

import dmft
from dmft.cli import main
from dmft.config import ConfigError

SMALL = {"optim.steps": 8, "simulate.width": 128, "simulate.seeds": 2, "simulate.spectrum_every": 4}


@pytest.fixture
def cfg(repo_root):
    return dmft.load_config(repo_root / "configs/mean_field.toml", overrides=SMALL)


def test_dataset_variables_theory_and_twin(cfg):
    th, sim = dmft.compare(cfg)
    for name in ("train_loss", "test_loss", "f", "ntk", "ntk_alignment", "Phi_diag", "outlier_sv", "bulk_edge",
                 "residual", "converged", "diverged", "divergence_step", "mc_error", "gram_consistency"):
        assert name in th, name
    assert th.sizes["t"] == 8 and th.sizes["layer"] == 2 and th.sizes["layer_phi"] == 3
    assert bool(th.converged) and float(th.residual) < 1e-12 and float(th.gram_consistency.max()) < 1e-12
    for name in ("train_loss", "test_loss", "f", "ntk", "ntk_alignment", "Phi_diag", "top_sv", "diverged"):
        assert name in sim and "seed" in sim[name].dims, name
    assert sim.attrs["width"] == 128 and th.attrs["kind"] == "theory" and sim.attrs["kind"] == "simulation"
    np.testing.assert_allclose(th.train_loss[0], sim.train_loss.mean("seed")[0], rtol=0.3)


def test_ntk_parameterization_uses_gamma0_over_sqrt_width(cfg):
    a = dmft.solve(cfg.replace({"model.parameterization": "ntk", "model.gamma0": 32.0, "simulate.width": 1024}))
    b = dmft.solve(cfg.replace({"model.gamma0": 1.0}))  # μP with γ0 = 32/√1024 = 1
    np.testing.assert_allclose(a.train_loss, b.train_loss, rtol=1e-12)
    assert a.attrs["gamma0_effective"] == pytest.approx(1.0)


def test_divergence_warns_and_flags(cfg):
    with pytest.warns(RuntimeWarning, match="diverged at step"):
        ds = dmft.solve(cfg.replace({"optim.lr": 8.0}))
    assert bool(ds.diverged) and 0 < int(ds.divergence_step) < 7
    assert np.isnan(ds.train_loss.values[-1])


def test_diverging_twin_is_flagged_per_seed_and_masked(cfg):
    """A step far past stability: the twin (depth 3, so the subspace iteration runs on non-finite weights) does
    not raise; each seed is flagged with the configured threshold, values after its step are NaN (dmft.results),
    and the theory flags the same run."""
    bad = cfg.replace({"optim.lr": 8.0, "simulate.width": 64})
    with pytest.warns(RuntimeWarning, match=r"mean_field twin diverged for 2 of 2 seeds \(first at step"):
        sim = dmft.simulate(bad)
    assert sim.diverged.values.all() and sim.divergence_step.dtype.kind == "i"
    for s in range(2):
        k = int(sim.divergence_step[s])
        assert 0 < k < 7 and np.isfinite(sim.train_loss[s, : k + 1]).all()
        assert np.isnan(sim.train_loss[s, k + 1 :]).all()
        assert np.isnan(sim.top_sv.isel(seed=s).sel(t_spec=slice(k + 1, None))).all()
        assert np.isnan(sim.ntk[s, k + 1 :]).all() and np.isfinite(sim.ntk[s, : k + 1]).all()
    loose = cfg.replace({"optim.lr": 8.0, "simulate.width": 64, "solver.divergence_threshold": 1e300})
    with pytest.warns(RuntimeWarning, match="diverged"):  # only the non-finite loss counts now: later or never
        later = dmft.simulate(loose)
    assert (later.divergence_step.values > sim.divergence_step.values).all()


def test_cli_run_simulate_compare_plot_sweep(tmp_path, repo_root, capsys):
    sets = [f"{k}={v}" for k, v in SMALL.items()]
    conf = str(repo_root / "configs/mean_field.toml")
    for command in ("run", "simulate", "compare"):
        out = tmp_path / command
        assert main([command, conf, "--out", str(out), *sum((["--set", s] for s in sets), [])]) == 0
        assert (out / "result.nc").exists() and (out / "losses.png").exists() and (out / "kernels.png").exists()
        assert (out / "outliers.png").exists()
    ds = xr.open_dataset(tmp_path / "compare" / "result.nc")
    assert "sim_top_sv" in ds and "outlier_sv" in ds
    ds.close()
    assert main(["plot", str(tmp_path / "compare" / "result.nc"), "--out", str(tmp_path / "replot")]) == 0
    assert (tmp_path / "replot" / "outliers.png").exists()
    sweep = str(repo_root / "configs/sweeps/mean_field_gamma0.toml")
    assert main(["sweep", sweep, "--out", str(tmp_path / "sweep"), "--set", "sweep.gamma0=[1.0, 3.0]",
                 *sum((["--set", s] for s in sets), [])]) == 0
    grid = xr.open_dataset(tmp_path / "sweep" / "result.nc")
    assert grid.sizes["gamma0"] == 2 and "outlier_sv" in grid
    grid.close()
    assert (tmp_path / "sweep" / "losses_vs_gamma0.png").exists()
    assert main(["run", conf, "--set", "solver.engine=closed_form", "--set", "model.activation=tanh"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert any("solver.engine = 'closed_form'" in line for line in err)


def test_bad_values_are_config_errors(repo_root):
    with pytest.raises(ConfigError, match="simulate.width"):
        dmft.load_config(repo_root / "configs/mean_field.toml", overrides={"simulate.width": 0})
    with pytest.raises(ConfigError, match="solver.output"):
        dmft.load_config(repo_root / "configs/mean_field.toml", overrides={"solver.output": "approx"})


def test_sweep_values_do_not_recompile(cfg):
    """γ0, σ, σ_w, η and the data values are traced: a second config with new values reuses the compiled march."""
    from dmft.families.mean_field import _linear

    quiet = cfg.replace({"solver.outliers": False})
    dmft.solve(quiet)
    before = _linear._march._cache_size()
    dmft.solve(quiet.replace({"model.gamma0": 1.7, "model.sigma": 0.9, "optim.lr": 0.03, "data.noise": 0.1}))
    assert _linear._march._cache_size() == before
