"""Deep linear theory and twin on the one result schema (dmft/results.py), and a twin that never crashes.

Issue 11 item 1: `dmft simulate configs/deep_linear_mup.toml --set optim.lr=0.5 --set simulate.dim=50` ended in
`LinAlgError: Eigenvalues did not converge` (NaN weights handed to LAPACK), the twin flagged divergence with a
hard-coded 1e6 instead of `solver.divergence_threshold`, losses of 5e261 were kept, and plots failed on them.
"""

import io
import warnings

import numpy as np
import pytest

import dmft
from dmft.families.deep_linear import problem
from dmft.families.deep_linear import theory as dl
from dmft.families.deep_linear import twin as sdl
from dmft.results import divergence, missing_long_names, record_steps


def small(repo_root, **over):
    return dmft.load_config(repo_root / "configs/deep_linear_mup.toml", overrides={
        "optim.steps": 10, "simulate.dim": 16, "simulate.seeds": 2, "simulate.spectrum_every": 4, **over})


@pytest.fixture(scope="module")
def blown(repo_root):
    """lr = 50: the weights reach inf/NaN within a few steps (one compile serves every lr: sizes only)."""
    cfg = small(repo_root, **{"optim.lr": 50.0})
    raw = {}
    real = sdl.to_dataset

    def keep_raw(res, *args, **kwargs):
        raw.update(res)
        return real(res, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp, pytest.warns(RuntimeWarning, match="2 of 2 seeds diverged"):
        mp.setattr(sdl, "to_dataset", keep_raw)
        sim = sdl.simulate_config(cfg)
    return cfg, sim, raw


def test_diverging_twin_finishes_flagged_and_masked(blown):
    _, sim, raw = blown
    assert sim.diverged.all()
    k = sim.divergence_step.values
    assert (k >= 0).all()
    t = sim.t.values
    for s in range(2):
        assert np.isfinite(sim.test_loss[s, : k[s]]).all()  # before divergence: finite, below the threshold
        assert np.isnan(sim.test_loss[s, t > k[s]]).all() and np.isnan(sim.train_loss[s, t > k[s]]).all()
        later = sim.t_spec.values > k[s]
        assert np.isnan(sim.spectrum[s, later]).all() and np.isnan(sim.sharpness[s, later]).all()
    # the raw twin reached non-finite weights: their spectra are NaN, never a LAPACK failure
    assert not np.isfinite(raw["test_loss"][:, -1]).any()
    assert np.isnan(raw["spectrum"][:, -1]).all()


def test_no_lapack_call_on_non_finite_matrices(monkeypatch):
    """A Gram with a non-finite entry is replaced by a safe matrix before the eigensolver and masked after."""
    seen = []
    real = np.linalg.eigvalsh

    def guarded(a):
        seen.append(np.isfinite(a).all())
        return real(a)

    monkeypatch.setattr(np.linalg, "eigvalsh", guarded)
    good = np.diag([4.0, 1.0, 0.25])
    batch = np.stack([good, np.full((3, 3), np.nan), np.where(np.eye(3) > 0, np.inf, 0.0)])
    sv = np.asarray(sdl._sv_from_gram(sdl.jnp.asarray(batch)))
    assert seen and all(seen)
    np.testing.assert_allclose(sv[0], [2.0, 1.0, 0.5], rtol=1e-12)
    assert np.isnan(sv[1:]).all()


def test_twin_uses_the_configured_threshold(repo_root):
    """A lower solver.divergence_threshold flags the same run earlier; the rule is dmft.results.divergence."""
    cfg = small(repo_root, **{"optim.lr": 0.5, "simulate.record_spectra": False})
    with pytest.warns(RuntimeWarning, match="diverged"):
        default = sdl.simulate_config(cfg)
    with pytest.warns(RuntimeWarning, match="diverged"):
        tight = sdl.simulate_config(cfg.replace({"solver.divergence_threshold": 3.0}))
    assert (tight.divergence_step.values >= 0).all()
    assert (tight.divergence_step.values < default.divergence_step.values).all()
    raw = sdl.train(sdl.jax.random.split(sdl.jax.random.key(cfg.simulate.seed), 2)[0], sdl.spec_from_config(cfg))
    curves = np.stack([np.asarray(raw["train_loss"]), np.asarray(raw["test_loss"])])
    k = divergence(curves, 3.0)[1]
    assert int(tight.divergence_step[0]) == k[k >= 0].min()


def test_plots_draw_what_is_finite(blown, repo_root):
    """Loss, spectrum and outlier figures of a diverged twin (with spectra, and without) draw without error."""
    from dmft.families.deep_linear.figures import figures
    from dmft.io import attach_config

    cfg, sim, _ = blown
    sim = attach_config(sim, cfg)
    for fig in figures(None, sim).values():
        fig.savefig(io.BytesIO(), format="png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        theory = attach_config(dl.solve_config(cfg.replace({"optim.lr": 0.05})), cfg)
    assert np.isfinite(sim.spectrum.sel(t_spec=0)).any()  # t = 0 drawn; later all-NaN panels are labelled
    for fig in figures(theory, sim).values():
        fig.savefig(io.BytesIO(), format="png")
    bare = sim.drop_vars(["spectrum", "i"]).assign(test_loss=sim.test_loss.where(sim.t != 2, np.inf))
    for fig in figures(None, bare).values():
        fig.savefig(io.BytesIO(), format="png")


def test_one_schema_for_theory_and_twin(repo_root):
    """Status convention (-1: not diverged), one record schedule, long names everywhere, level 2 at the twin's
    steps. T = 10 with k = 4 records 0, 4, 8, 9: the old twin skipped step 8."""
    cfg = small(repo_root, **{"model.depth": 2})
    th = dl.solve_config(cfg)
    sim = sdl.simulate_config(cfg)
    steps = problem.spectrum_steps(cfg)
    assert list(steps) == [0, 4, 8, 9] == list(record_steps(10, 4))
    assert list(sim.t_spec.values) == list(steps)
    assert set(steps) <= set(np.flatnonzero(th.outlier_evaluated.values))
    for ds in (th, sim):
        assert missing_long_names(ds) == []
        assert ds.divergence_step.dtype == np.int64 and (ds.divergence_step.values == -1).all()
        assert not ds.diverged.values.any() and ds.converged.values.all()
    # the same names in the array API and the Dataset
    sol = dl.solve(dl.params_from_config(cfg), 10, 2)
    for name in ("test_loss", "train_loss", "C_beta", "C_delta", "C_q", "R", "H", "J", "P0", "C_g", "C_e", "M", "F",
                 "P", "Q", "B", "A", "A_0", "divergence_step", "diverged", "residual"):
        assert name in th and hasattr(sol, name), name


def test_twin_compiles_sizes_only(repo_root):
    """New hyperparameter values (η, γ0, σ, …) reuse the compiled twin; only sizes recompile."""
    cfg = small(repo_root, **{"simulate.record_spectra": False})
    sdl.simulate_config(cfg)
    before = sdl._train._cache_size()
    sdl.simulate_config(cfg.replace({"optim.lr": 0.07, "model.gamma0": 2.0, "model.sigma": 0.8, "data.noise": 0.3}))
    assert sdl._train._cache_size() == before
