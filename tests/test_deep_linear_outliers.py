"""Level 2 for deep linear networks: theory outliers of the first and a hidden layer against the twin's top
singular values (depth 2 and 3), the Gram consistency identity, and no outlier when nothing is learned.

Measured (mean relative error of the top singular value over layers and t ∈ {10, 20}, config deep_linear_mup):
D = 24 (64 seeds): 0.6–1.2 %; D = 48 (32 seeds): 0.4–0.6 %; D = 192 (8 seeds): 0.25–0.5 %. The finite-size bias is
small, so the test pools many seeds at D = 16 and D = 128 and asks for a shrinking gap below 1 %.
"""

import numpy as np
import pytest

import dmft
from dmft.families import deep_linear as dl
from dmft.families.deep_linear import spectra as dls
from dmft.families.deep_linear import twin as sdl


def cfg_for(repo_root, depth, **over):
    return dmft.load_config(repo_root / "configs/deep_linear_mup.toml", overrides={
        "model.depth": depth, "optim.steps": 21, "simulate.spectrum_every": 10, **over})


def outlier_gap(th, sim, depth):
    errs = []
    for layer in range(depth):
        for ts in (10, 20):
            theory = float(th.outlier_sv.sel(layer=layer, t=ts, k=0))
            twin = float(sim.spectrum.sel(layer=layer, t_spec=ts).isel(i=0).mean())
            errs.append(abs(twin - theory) / theory)
    return float(np.mean(errs))


@pytest.mark.parametrize("depth", [2, pytest.param(3, marks=pytest.mark.slow)])  # depth 3: benchmark-time
def test_outliers_match_twin_with_shrinking_gap(repo_root, depth):
    cfg = cfg_for(repo_root, depth)
    th = dl.solve_config(cfg)
    assert bool(th.outliers_converged.all())
    assert np.isfinite(th.outlier_sv.sel(t=20, k=0)).all()  # every layer has an outlier by t = 20
    gaps = []
    for dim, seeds in ((16, 128), (128, 16)):
        sim = sdl.simulate_config(cfg.replace({"simulate.dim": dim, "simulate.seeds": seeds}))
        gaps.append(outlier_gap(th, sim, depth))
    assert gaps[1] < 0.8 * gaps[0] and gaps[1] < 0.01, gaps
    # treating the spikes as independent of the bulk (naive BBP with the same spike Grams) misses by ≈ 10 %
    naive = th.copy()
    naive["outlier_sv"] = naive_outliers(cfg, depth).fillna(th.bulk_edge)  # a missed outlier sits at the edge
    assert outlier_gap(naive, sim, depth) > 5 * gaps[1]


def naive_outliers(cfg, depth):
    """Outliers as if the spikes were independent of the initial matrix: GᵀY = 0, YᵀY = qσ²ΦᵀΦ, ZᵀZ = σ²GᵀG."""
    import xarray as xr

    from dmft.spectra.outliers import Grams, outliers_over_time

    p = dl.params_from_config(cfg)
    sol = dl.solve(p, cfg.optim.steps, depth, sgd=cfg.optim.batch_ratio is not None)
    rows = []
    for layer in range(depth):
        g, c = dls.layer_grams(sol, p, layer, depth)
        q = dls.aspect_ratio(p, layer)
        indep = Grams(g.GtG, 0 * g.GtY, q * p.sigma**2 * g.PhitPhi, g.PhitPhi, 0 * g.PhitZ, p.sigma**2 * g.GtG)
        rows.append(np.asarray(outliers_over_time(indep, c, q, p.sigma).sv))
    return xr.DataArray(np.stack(rows), dims=("layer", "t", "k"), coords={"layer": np.arange(depth)})


def test_gram_consistency_identity(repo_root):
    """ΦᵀZ = (GᵀY)ᵀ equates averages over two different spaces; it holds to machine precision for every layer."""
    cfg = cfg_for(repo_root, 3, **{"data.noise": 0.3, "model.sigma": 0.8})
    p = dl.params_from_config(cfg)
    sol = dl.solve(p, 21, 3)
    for layer in range(3):
        grams, _ = dls.layer_grams(sol, p, layer, 3)
        assert float(dls.consistency_residual(grams)) < 1e-12


def test_no_outlier_without_learning(repo_root):
    th = dl.solve_config(cfg_for(repo_root, 2, **{"optim.lr": 1e-4}))
    assert np.isnan(th.outlier_sv).all() and (th.escape_step == -1).all()
    th0 = dl.solve_config(cfg_for(repo_root, 2))
    assert np.isnan(th0.outlier_sv.sel(t=0)).all()  # t = 0: no spike yet


def test_outliers_converge_under_mup_and_vanish_under_ntk(repo_root):
    """μP: per-step spike strength ηγ0 is width independent, the outlier trajectories settle as ν grows;
    NTK: spikes shrink as ν^{-1/2} and the outliers approach the bulk edge."""
    base = cfg_for(repo_root, 2)
    mup = [dl.solve_config(base.replace({"model.width_ratio": nu})).outlier_sv.sel(layer=1, t=20, k=0).item()
           for nu in (1, 4, 16)]
    assert abs(mup[2] - mup[1]) < 0.5 * abs(mup[1] - mup[0])
    ntk = [dl.solve_config(base.replace({"model.width_ratio": nu, "model.parameterization": "ntk"}))
           for nu in (1, 16)]
    excess = [(d.outlier_sv.sel(layer=1, t=20, k=0) - d.bulk_edge.sel(layer=1)).item() for d in ntk]
    assert np.isnan(excess[1]) or excess[1] < 0.5 * excess[0]


def test_twin_sharpness_at_init_matches_wide_limit(repo_root):
    """λ_max of the tangent kernel at t = 0 tends to κ(1 + α^{-1/2})² as ν → ∞ (spectra.md §10)."""
    cfg = dmft.load_config(repo_root / "configs/deep_linear_ntk.toml", overrides={
        "model.width_ratio": 16, "model.depth": 1, "model.sigma": 1.0, "simulate.dim": 200, "simulate.seeds": 2,
        "optim.steps": 2, "simulate.spectrum_every": 1})
    sim = sdl.simulate_config(cfg)
    wide = dl.lazy_kappa(1, 1.0, 1.0) * (1 + cfg.data.alpha**-0.5) ** 2
    assert float(sim.sharpness.isel(t_spec=0).mean()) == pytest.approx(wide, rel=0.06)


def test_one_pass_sgd_outliers_match_twin(repo_root):
    """Level 2 with one-pass SGD (fresh batch each step, H = I, diagonal C_Δ, α → α_B): the same six-Gram
    formulas. Measured (depth 2, α_B = 0.5, top outlier of both layers at t = 10, 20): relative gap 0.03 %–3.3 %
    at D = 16 (128 seeds), 0.03 %–1.1 % at D = 128 (16 seeds), every D = 128 gap within 1.5 standard errors of
    the seed mean. The test asks for |gap| < 3 standard errors at D = 128 (32 seeds) for every layer and step, a
    smaller pooled gap than at D = 16, and rejects naive BBP by the same z-score."""
    cfg = cfg_for(repo_root, 2, **{"optim.batch_ratio": 0.5})
    th = dl.solve_config(cfg)
    assert float(th.gram_consistency.max()) < 1e-12
    small = sdl.simulate_config(cfg.replace({"simulate.dim": 16, "simulate.seeds": 128}))
    large = sdl.simulate_config(cfg.replace({"simulate.dim": 128, "simulate.seeds": 32}))
    assert outlier_gap(th, large, 2) < outlier_gap(th, small, 2)
    naive = naive_outliers(cfg, 2).fillna(th.bulk_edge)
    for layer in range(2):
        for ts in (10, 20):
            tw = large.spectrum.sel(layer=layer, t_spec=ts).isel(i=0)
            se = float(tw.std()) / np.sqrt(tw.sizes["seed"])
            z = abs(float(tw.mean()) - float(th.outlier_sv.sel(layer=layer, t=ts, k=0))) / se
            assert z < 3, (layer, ts, z)
            z_naive = abs(float(tw.mean()) - float(naive.sel(layer=layer, t=ts).isel(k=0))) / se
            assert z_naive > 5, (layer, ts, z_naive)


def test_level2_on_leading_blocks_equals_full_grams(repo_root):
    """Steps are solved on leading blocks (multiples of 32) of the Grams, rank-reduced; the result must equal
    the solve on the full T×T Grams, and the default step selection must hold the twin's spectrum steps."""
    from dmft.spectra.outliers import outliers_over_time

    cfg = cfg_for(repo_root, 2)
    p = dl.params_from_config(cfg)
    sol = dl.solve(p, 21, 2)
    steps = np.array([0, 3, 9, 16, 20])
    for layer in range(2):
        blocks = dls.layer_outliers(sol, p, layer, 2, 3, steps)
        grams, c = dls.layer_grams(sol, p, layer, 2)
        full = outliers_over_time(grams, c, dls.aspect_ratio(p, layer), p.sigma, steps, k_max=3)
        np.testing.assert_allclose(np.asarray(blocks.sv), np.asarray(full.sv), rtol=1e-9, equal_nan=True)
        np.testing.assert_array_equal(np.asarray(blocks.n_outliers), np.asarray(full.n_outliers))
    assert list(dls.level2_steps(200, extra=[49, 99])) == sorted({*range(0, 200, 4), 199, 49, 99})
    th = dl.solve_config(cfg.replace({"solver.outlier_every": 7}))
    assert list(np.flatnonzero(th.outlier_evaluated.values)) == [0, 7, 10, 14, 20]
    assert np.isnan(th.outlier_sv.sel(t=5)).all() and (th.n_outliers.sel(t=5) == -1).all()
