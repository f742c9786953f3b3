"""Level-2 speed-ups are exact: the rank-reduced root search (spectra.outliers.reduce_spikes(rank=...)) equals the
full one, a too small rank is flagged, and the Newton root solver (analytic derivative) equals the bracketing one."""

import jax
import numpy as np

import dmft
from dmft.families.deep_linear import spectra as dls
from dmft.families.deep_linear import theory as dl
from dmft.spectra import outliers as so


def layer_problem(repo_root, T=40, layer=1):
    cfg = dmft.load_config(repo_root / "configs/deep_linear_mup.toml", overrides={
        "model.depth": 2, "optim.steps": T, "solver.outliers": False})
    p = dl.params_from_config(cfg)
    sol = dl.solve(p, T, 2)
    grams, c = dls.layer_grams(sol, p, layer, 2)
    return grams, c, dls.aspect_ratio(p, layer), p.sigma


def test_rank_reduction_is_exact(repo_root):
    grams, c, q, sigma = layer_problem(repo_root)
    steps = np.array([5, 20, 39])
    ranks = np.asarray(so.spike_ranks(grams, c, steps, 1e-10))
    assert ranks.max() < 20  # nearly collinear spikes: far below t = 39
    reduced = so.outliers_over_time(grams, c, q, sigma, steps, k_max=3)
    full = so.outliers_over_time(grams, c, q, sigma, steps, k_max=3, rank_reduce=False)
    np.testing.assert_allclose(np.asarray(reduced.sv), np.asarray(full.sv), rtol=1e-12, equal_nan=True)
    np.testing.assert_array_equal(np.asarray(reduced.n_outliers), np.asarray(full.n_outliers))
    assert np.isfinite(np.asarray(full.sv)[-1, 0]) and bool(np.all(reduced.converged))
    # a rank below the numerical rank is not silently wrong
    g, ct = so.mask_leading_block(grams, c, 39)
    low = so._outlier_sv(so.Grams(*so._floats(*g)), *so._floats(ct, q, sigma, 1e-3, 1e-10), k_max=3, rank=2)
    assert not bool(low.converged)


def test_newton_equals_bracketing(repo_root, monkeypatch):
    grams, c, q, sigma = layer_problem(repo_root)
    g, ct = so.mask_leading_block(grams, c, 39)
    args = (so.Grams(*so._floats(*g)), *so._floats(ct, q, sigma, 1e-3, 1e-10))
    results = {}
    for root in ("newton", "chandrupatla"):
        monkeypatch.setattr(so, "_ROOT", root)
        so._outlier_sv.clear_cache()
        results[root] = jax.device_get(so._outlier_sv(*args, k_max=3, rank=16))
    so._outlier_sv.clear_cache()
    a, b = results["newton"], results["chandrupatla"]
    assert bool(a.converged) and bool(b.converged) and int(a.n_outliers) >= 1
    np.testing.assert_allclose(a.sv, b.sv, rtol=1e-13, equal_nan=True)
