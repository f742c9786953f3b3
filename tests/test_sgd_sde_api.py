"""sgd_sde through the user's surface: config errors, api dispatch, batching without recompiles, divergence
reporting, results on disk, figures, sweeps and the shipped configs."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import dmft
import dmft.api as api
from dmft.families.sgd_sde import _solve
from dmft.families.sgd_sde import figures as sgd_figures
from dmft.io import load_dataset, save_dataset
from dmft.plot import figures_for, merge_compare

SMALL = {
    "model.family": "sgd_sde",
    "model.drift": "teacher",
    "model.rows": 6,
    "model.cols": 4,
    "data.noise": 0.5,
    "optim.steps": 21,
    "solver.ensemble": 4,
    "simulate.seeds": 4,
}


@pytest.mark.parametrize(
    "override, message",
    [
        (
            {"model.drift": "resnet"},
            r"model\.drift = 'resnet': must be one of 'noise', 'teacher', 'phase_teacher'",
        ),
        ({"optim.batch_size": 0}, r"optim\.batch_size = 0: must be an integer >= 1"),
        ({"model.rows": "16"}, r"model\.rows = '16': must be an integer"),
        ({"solver.level": "eigen"}, r"solver\.level = 'eigen': must be one of"),
        ({"optim.weight_decay": -1.0}, r"optim\.weight_decay = -1\.0: must be a number >= 0"),
    ],
)
def test_bad_keys_give_one_line_config_errors(override: dict, message: str) -> None:
    with pytest.raises(dmft.ConfigError, match=message) as err:
        dmft.load_config(None, {**SMALL, **override})
    assert "\n" not in str(err.value)


def test_cross_key_rules() -> None:
    cfg = dmft.load_config(None, {**SMALL, "model.drift": "phase_teacher", "solver.level": "singular_values"})
    with pytest.raises(dmft.ConfigError, match=r"solver\.level = 'singular_values': no closure"):
        api.solve(cfg)
    cfg = dmft.load_config(None, {**SMALL, "model.drift": "phase_teacher", "data.samples": 2})
    with pytest.raises(dmft.ConfigError, match=r"optim\.batch_size = 4: must be <= data\.samples = 2"):
        api.simulate(cfg)


def test_theory_and_twin_share_instances_and_variables(tmp_path: Path) -> None:
    """Member i and seed i start from the same W(0) (paired); same variables, float64; netCDF round trip;
    the compare figures of a saved result."""
    cfg = dmft.load_config(None, SMALL)
    th, sim = api.solve(cfg), api.simulate(cfg)
    np.testing.assert_array_equal(th["sv"].isel(t=0).values, sim["sv"].isel(t=0).values)
    np.testing.assert_array_equal(th["teacher_sv"].values, sim["teacher_sv"].values)
    laws = {"mp_init_edge", "expected_test_loss"}  # closed forms: theory only (the twin never imports them)
    assert set(th.data_vars) == set(sim.data_vars) | laws
    assert th["sv"].dims == ("member", "t", "i") and sim["sv"].dims == ("seed", "t", "i")
    assert th["sv"].dtype == np.float64
    np.testing.assert_array_equal(th["t"].values, np.arange(0, 21, 1))
    path = save_dataset(merge_compare(th, sim), tmp_path / "result.nc")
    figs = figures_for(load_dataset(path))
    assert {"spectra", "sv_trajectories", "moments"} <= set(figs)


def test_batch_matches_single_solves_under_one_compile() -> None:
    """Configs differing in vmappable keys are vmapped under one compile; each point equals its own solve."""
    cfgs = [
        dmft.load_config(None, {**SMALL, "optim.lr": lr, "model.sigma": s})
        for lr, s in [(0.05, 1.0), (0.1, 2.0)]
    ]
    batch = _solve.solve_batch(cfgs)
    singles = [_solve.solve_config(cfgs[0])]
    compiled = _solve.sde_ensemble._cache_size()
    singles.append(_solve.solve_config(cfgs[1]))
    _solve.solve_config(cfgs[0].replace({"optim.lr": 0.2, "optim.grad_noise": 0.3, "data.noise": 1.0}))
    assert _solve.sde_ensemble._cache_size() == compiled  # new values of vmappable keys: no recompile
    for b, s in zip(batch, singles, strict=True):
        np.testing.assert_allclose(b["sv"].values, s["sv"].values, rtol=1e-10)


def test_a_new_seed_does_not_recompile() -> None:
    """``simulate.seed`` is traced in the SDE ensemble and the SGD twin: a second seed reuses the compiled
    functions (and draws other instances); the record schedule ends at the last step."""
    import jax

    from dmft.families.sgd_sde import twin

    cfg = dmft.load_config(None, {**SMALL, "optim.steps": 12, "solver.record_every": 5})
    first = (_solve.solve_config(cfg), twin.simulate_config(cfg))
    sizes = (_solve.sde_ensemble._cache_size(), twin.sgd_ensemble._cache_size())
    with jax.log_compiles():
        other = cfg.replace({"simulate.seed": 7})
        second = (_solve.solve_config(other), twin.simulate_config(other))
    assert (_solve.sde_ensemble._cache_size(), twin.sgd_ensemble._cache_size()) == sizes
    for a, b in zip(first, second, strict=True):
        assert np.abs(a["sv"].isel(t=0).values - b["sv"].isel(t=0).values).max() > 1e-3  # other instances
        np.testing.assert_array_equal(a["t"].values, [0, 5, 10, 11])  # dmft.results.record_steps


def test_divergence_is_flagged_and_warned() -> None:
    """Weight decay with η λ_wd = 2.5 > 2: every run blows up; reported as ``diverged`` with a warning."""
    cfg = dmft.load_config(
        None,
        {
            **SMALL,
            "model.drift": "noise",
            "optim.lr": 1.0,
            "optim.weight_decay": 2.5,
            "optim.grad_noise": 0.1,
            "optim.steps": 60,
        },
    )
    with pytest.warns(RuntimeWarning, match="4 of 4 runs diverged"):
        ds = api.solve(cfg)
    assert ds["diverged"].values.all()
    with pytest.warns(RuntimeWarning, match="4 of 4 runs diverged"):  # the twin never raises either
        sim = api.simulate(cfg)
    for d in (ds, sim):  # per run: the first bad record, NaN after it (dmft.results convention)
        k = d["divergence_step"].values
        assert (k > 0).all()
        for r, kr in enumerate(k):
            run = d["sum_sq"].isel({d.attrs["ensemble_dim"]: r})
            assert np.isnan(run.sel(t=slice(kr + 1, None))).all() and np.isfinite(run.sel(t=slice(0, kr - 1))).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ok = api.solve(cfg.replace({"optim.lr": 0.1}))
    assert not ok["diverged"].values.any()


def test_phase_sweep_and_phase_map() -> None:
    """A 2×2 phase_teacher sweep through dmft.sweep (SDE batched, SGD per point) and the overlaid phase
    map."""
    cfg = dmft.load_config(
        None,
        {
            "model.family": "sgd_sde",
            "model.drift": "phase_teacher",
            "model.rows": 4,
            "model.cols": 8,
            "data.samples": 16,
            "optim.steps": 11,
            "solver.ensemble": 2,
            "simulate.seeds": 2,
            "sweep.sigma": [0.5, 4.0],
            "sweep.lr": [0.1, 1.0],
        },
    )
    sde = api.sweep(cfg, progress=False)
    sgd = api.sweep(cfg, kind="simulate", progress=False)
    for grid in (sde, sgd):
        assert grid["phase_fraction"].dims == ("sigma", "lr", "phase_name")
        np.testing.assert_allclose(grid["phase_fraction"].sum("phase_name"), 1.0)
    assert set(figures_for(sgd)) == {"phase_map"}
    fig = sgd_figures.phase_map_figure(sde, sgd)
    assert len(fig.axes) == 1


@pytest.mark.parametrize(
    "name",
    [
        "sgd_sde.toml",
        "sgd_sde_noise.toml",
        "sgd_sde_phase.toml",
        "sweeps/sgd_phase_diagram.toml",
        "sweeps/sgd_spread.toml",
    ],
)
def test_shipped_configs_load(repo_root: Path, name: str) -> None:
    cfg = dmft.load_config(repo_root / "configs" / name)
    assert cfg.model.family == "sgd_sde"
