"""Deep-linear DMFT against closed forms: t = 0, the exact first step, causality, lazy (NTK) and μP limits,
divergence, batching and compilation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dmft
from dmft.families import deep_linear as dl


def make(repo_root, **over):
    over = {"solver.outliers": False, **over}  # level 1 only here; level 2 has its own tests
    return dmft.load_config(repo_root / "configs/deep_linear_mup.toml", overrides=over)


@pytest.mark.parametrize(
    "over",
    [
        {"model.depth": 1},
        {"model.depth": 3, "model.sigma": 1.3, "model.sigma_readout": 0.7, "data.noise": 0.5},
        {"model.depth": 2, "model.parameterization": "ntk", "model.width_ratio": 0.5, "data.teacher_variance": 2.0},
    ],
)
def test_t0_oracle(repo_root, over):
    cfg = make(repo_root, **over, **{"optim.steps": 20})
    th = dl.solve_config(cfg)
    m, d = cfg.model, cfg.data
    g0 = m.gamma0 / np.sqrt(m.width_ratio) if m.parameterization == "ntk" else m.gamma0
    expected = 0.5 * (d.teacher_variance + m.sigma ** (2 * m.depth) * m.sigma_readout**2 / (g0**2 * m.width_ratio)
                      + d.noise**2)
    assert th.test_loss[0] == pytest.approx(expected, rel=1e-13)
    assert th.train_loss[0] == pytest.approx(expected, rel=1e-13)
    # C_g^ℓ(0,0) = σ^{2(L−ℓ)}σ_w²  and  C_q(0,0) = C_Δ(0,0)/α + C_β̃(0,0)
    for ell in range(1, m.depth + 1):
        expected_cg = m.sigma ** (2 * (m.depth - ell)) * m.sigma_readout**2
        assert float(th.C_g.sel(space=ell)[0, 0]) == pytest.approx(expected_cg)
    assert float(th.C_q[0, 0]) == pytest.approx(float(th.C_delta[0, 0]) / d.alpha + float(th.C_beta[0, 0]))


@pytest.mark.parametrize(
    "vals",
    [
        (0.1, 1.0, 2.0, 1.0, 1.0, 2.0, 0.0, 1.0),
        (0.3, 2.5, 0.7, 0.8, 1.3, 0.6, 0.4, 1.5),
        (0.05, 0.4, 5.0, 1.2, 0.5, 3.0, 0.2, 0.7),
    ],
)
def test_first_step_exact_depth1(vals):
    """The DMFT's t = 1 test loss equals an independent free-probability computation of one GD step."""
    p = dl.DeepLinearParams(*(jnp.asarray(v) for v in vals))
    sol = dl.solve(p, 2, 1)
    assert float(sol.test_loss[1]) == pytest.approx(float(dl.first_step_test_loss(p)), rel=1e-12)


def test_first_step_oracle_is_sensitive():
    """The oracle distinguishes nearby parameters (it would catch a wrong learning-rate or σ convention)."""
    base = dl.DeepLinearParams(*(jnp.asarray(v) for v in (0.3, 2.5, 0.7, 0.8, 1.3, 0.6, 0.4, 1.5)))
    other = base._replace(lr=jnp.asarray(0.31))
    assert abs(float(dl.first_step_test_loss(base)) - float(dl.first_step_test_loss(other))) > 1e-3


@pytest.mark.parametrize("sgd", [False, True])
def test_causality_and_structure(repo_root, sgd):
    over = {"model.depth": 3, "data.noise": 0.2}
    if sgd:
        over["optim.batch_ratio"] = 0.7
    cfg = make(repo_root, **over)
    p = dl.params_from_config(cfg)
    short = dl.solve(p, 12, 3, sgd)
    long = dl.solve(p, 20, 3, sgd)
    for k in ("C_beta", "C_delta", "C_q", "R", "H", "J", "P0", "C_g", "C_e", "B", "Q", "P"):
        np.testing.assert_allclose(getattr(long, k)[..., :12, :12], getattr(short, k), rtol=1e-12, atol=1e-14,
                                   err_msg=k)
    strictly_lower = lambda x: np.allclose(np.triu(np.asarray(x)), 0.0)  # noqa: E731
    for k in ("R", "P0"):
        assert strictly_lower(getattr(long, k))
    for ell in range(1, 4):
        assert strictly_lower(long.Q[ell]) and strictly_lower(long.B[ell])
        assert np.allclose(np.diag(long.M[ell]), 1.0) and np.allclose(np.triu(long.M[ell], 1), 0.0)
    assert np.allclose(np.diag(long.H), 1.0) and np.allclose(np.diag(long.J), 1.0)
    # A_0 has diagonal −σ²/(γ0ν); A_ℓ has diagonal σ^{2ℓ}A_0(t,t)
    a00 = -cfg.model.sigma**2 / (cfg.model.gamma0 * cfg.model.width_ratio)
    np.testing.assert_allclose(np.diag(long.A_0), a00, rtol=1e-12)
    np.testing.assert_allclose(np.diag(long.A[2]), cfg.model.sigma**4 * a00, rtol=1e-12)
    assert float(long.residual) < 1e-12


def test_ntk_scaling_approaches_the_lazy_limit(repo_root):
    """Under NTK scaling the DMFT converges to kernel regression by GD (deep_linear.md §7.3) as ν grows;
    measured gap ∝ 1/ν (0.032, 0.0084, 0.0021, 0.00053 at ν = 1, 4, 16, 64 for L = 1)."""
    for depth in (1, 2):
        cfg = make(repo_root, **{"model.parameterization": "ntk", "model.depth": depth, "optim.steps": 30,
                                 "optim.lr": 0.1, "model.gamma0": 1.0, "model.sigma": 0.9})
        m, d = cfg.model, cfg.data
        lazy = dl.lazy_test_loss(30, 0.1, depth, m.sigma, m.sigma_readout, m.gamma0, d.alpha, d.noise)
        gaps = [np.abs(dl.solve_config(cfg.replace({"model.width_ratio": nu})).test_loss.values - lazy).max()
                for nu in (1, 4, 16, 64)]
        assert all(b < 0.3 * a for a, b in zip(gaps, gaps[1:])), gaps
        assert gaps[-1] < 2e-3


def test_lazy_oracle_against_finite_matrix():
    """The MP quadrature in the lazy oracle equals GD on an explicit large random design."""
    rng = np.random.default_rng(0)
    D, alpha, lr, kappa_args = 1500, 1.5, 0.2, (1, 1.0, 1.0)
    P = int(alpha * D)
    X = rng.standard_normal((P, D))
    lam = np.linalg.eigvalsh(X.T @ X / P)
    kappa = dl.lazy_kappa(*kappa_args)
    t = np.arange(10)[:, None]
    c0 = 1.0 + 1.0 / 4.0  # ρ* + σ^{2L}σ_w²/γ̃0² with γ̃0 = 2
    noise = 0.3
    direct = c0 * np.mean((1 - lr * kappa * lam) ** (2 * t), axis=1)
    direct += noise**2 / alpha * np.mean((1 - (1 - lr * kappa * lam) ** t) ** 2 / lam, axis=1)
    oracle = dl.lazy_test_loss(10, lr, 1, 1.0, 1.0, 2.0, alpha, noise)
    np.testing.assert_allclose(oracle, 0.5 * (direct + noise**2), rtol=5e-3)


def test_mup_curves_converge_with_width(repo_root):
    """Under μP, successive width doublings change the curves less and less, and wider is better."""
    cfg = make(repo_root, **{"optim.steps": 30})
    curves = [dl.solve_config(cfg.replace({"model.width_ratio": nu})).test_loss.values for nu in (1, 4, 16, 64)]
    diffs = [np.abs(b - a).max() for a, b in zip(curves, curves[1:])]
    assert all(d2 < 0.35 * d1 for d1, d2 in zip(diffs, diffs[1:])), diffs
    finals = [c[-1] for c in curves]
    assert all(b < a for a, b in zip(finals, finals[1:])), finals


def test_gd_and_one_pass_sgd_differ_and_sgd_has_no_train_test_gap(repo_root):
    gd = dl.solve_config(make(repo_root, **{"data.noise": 0.3}))
    sgd = dl.solve_config(make(repo_root, **{"data.noise": 0.3, "optim.batch_ratio": 2.0}))
    np.testing.assert_allclose(sgd.train_loss, sgd.test_loss, rtol=1e-12)  # batch loss = test loss
    assert (gd.train_loss[1:] < gd.test_loss[1:]).all()  # data reuse: train below test
    assert np.abs(gd.test_loss - sgd.test_loss).max() > 1e-2


def test_divergence_is_flagged_not_silent(repo_root):
    cfg = make(repo_root, **{"optim.lr": 3.0, "optim.steps": 60})
    with pytest.warns(RuntimeWarning, match="diverged"):
        th = dl.solve_config(cfg)
    assert bool(th.diverged) and 0 < int(th.divergence_step) < 60
    k = int(th.divergence_step)  # dmft.results: the divergence step is kept, later values are NaN
    assert np.isfinite(th.test_loss[:k]).all() and np.isnan(th.test_loss[k + 1:]).all()
    assert not np.isfinite(th.test_loss[k]) or th.test_loss[k] > cfg.solver.divergence_threshold * th.test_loss[0]
    stable = dl.solve_config(make(repo_root))
    assert not bool(stable.diverged) and bool(stable.converged) and int(stable.divergence_step) == -1


def test_vmapped_batch_matches_single_solves_and_compiles_once(repo_root):
    base = make(repo_root, **{"optim.steps": 20})
    cfgs = [base.replace({"optim.lr": lr, "model.parameterization": par, "model.width_ratio": nu})
            for lr, par, nu in [(0.02, "mup", 1.0), (0.05, "ntk", 2.0), (0.08, "mup", 4.0)]]
    batch = dl.solve_batch(cfgs)
    for c, b in zip(cfgs, batch):
        np.testing.assert_allclose(b.test_loss, dl.solve_config(c).test_loss, rtol=1e-12)
    # a new value of a vmappable key must not trigger a recompile
    p = dl.params_from_config(base)
    dl.solve(p, 20, 2)
    with jax.log_compiles():
        import logging

        records = []
        handler = logging.Handler()
        handler.emit = records.append
        logging.getLogger("jax").addHandler(handler)
        try:
            dl.solve(p._replace(lr=0.07, gamma0=jnp.asarray(1.7)), 20, 2)
        finally:
            logging.getLogger("jax").removeHandler(handler)
    assert not [r for r in records if "Compiling" in r.getMessage()]


def test_gradients_flow_through_the_solver(repo_root):
    """Solvers are pure functions: d(final test loss)/d(lr) by autodiff matches a finite difference."""
    p = dl.params_from_config(make(repo_root, **{"optim.steps": 10}))
    f = lambda lr: dl.solve(p._replace(lr=lr), 10, 2, check=False).test_loss[-1]  # noqa: E731
    g = jax.grad(f)(jnp.asarray(0.05))
    fd = (f(jnp.asarray(0.05 + 1e-6)) - f(jnp.asarray(0.05 - 1e-6))) / 2e-6
    assert float(g) == pytest.approx(float(fd), rel=1e-5)
