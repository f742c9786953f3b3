"""Claims of the README and the theory notes that had no test (issue #11, item 6), for ``sgd_sde`` and
``diagonal_linear``: tail fits on the stationary SDE/SGD spectra, the late-time convergence rate of the solved
DMFT, β histograms against the twin, and incremental learning beyond the first plateau.

Every bound below is set from measured numbers (quoted in each docstring), and each test was run against a
planted bug (named in the docstring) that it must reject.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from scipy import stats

import dmft
import dmft.api as api
from dmft.families.diagonal_linear import (
    Params,
    _solve,
    causal_solve,
    fixed_point,
    late_time_rate,
    sample_teacher,
    small_init_curve,
)
from dmft.families.diagonal_linear.twin import TwinSpec, train
from dmft.spectra import fits

# ------------------------------------------------------------------------------------------------------------
# sgd_sde: the tail of the stationary spectrum
# ------------------------------------------------------------------------------------------------------------

ROWS, COLS, LR, WD, BATCH, GRAD_NOISE = 16, 8, 0.02, 1.0, 1, 1.0
STATIONARY_FROM = 250  # records at steps ≥ 250 (τ ≥ 5: five relaxation times of the entries, ten of λ)


def _noise_config(ensemble: int, **over: object) -> dmft.Config:
    return dmft.load_config(
        None,
        {
            "model.family": "sgd_sde",
            "model.drift": "noise",
            "model.rows": ROWS,
            "model.cols": COLS,
            "optim.lr": LR,
            "optim.batch_size": BATCH,
            "optim.grad_noise": GRAD_NOISE,
            "optim.weight_decay": WD,
            "optim.steps": 501,
            "solver.record_every": 50,
            "solver.ensemble": ensemble,
            "simulate.seeds": ensemble,
            **over,
        },
    )


def _laguerre_sample(step: float, matrices: int, seed: int = 7) -> np.ndarray:
    """λ = s² of exact draws from the stationary law, written here from theory/sgd_sde.md §1, §3 (not the
    library): W_{k+1} = (1 − hλ_wd)W_k + √(𝒟h) N_k with 𝒟 = ησ_g²/B has iid N(0, 𝒟/(λ_wd(2 − hλ_wd))) entries."""
    diffusion = LR * GRAD_NOISE**2 / BATCH
    var = diffusion / (WD * (2.0 - step * WD))
    w = np.random.default_rng(seed).normal(0.0, np.sqrt(var), (matrices, ROWS, COLS))
    return np.linalg.svd(w, compute_uv=False) ** 2


def _hill_above(lam: np.ndarray, threshold: float) -> float:
    """Hill exponent of the values above a fixed threshold (fits.hill_estimator with k = their number)."""
    flat = lam.ravel()
    return fits.hill_estimator(flat, int(np.sum(flat > threshold)))


@pytest.mark.parametrize("kind", ["sde_singular_values", "sgd"])
def test_tail_of_the_stationary_spectrum_is_the_laguerre_tail(kind: str) -> None:
    """Pure gradient noise with weight decay: the theory says the stationary λ = s² follow the Laguerre law,
    whose tail is Gaussian-like, not a power law (theory/sgd_sde.md §3; 2507.12709 claims power-law tails).

    On the stationary spectra of the Dyson-type singular-value SDE (``solver.level = "singular_values"``, h =
    η/8) and of real SGD (the twin, h = η), 16×8, 512 runs, records at τ = 5 … 10 pooled (24 576 values):

    * the power-law fit (``tail_fit``: KS lower cut-off, bootstrap) rejects a power law, p < 0.1 (measured p =
      0.00 for both on the last record; a Pareto tail passes the same fit, tests/test_fits.py);
    * the Hill exponent of the values above a fixed threshold, the 70 % quantile of the exact law, matches the
      exponent of 160 000 exact draws from that law (written here from the theory notes, not taken from the
      library). The threshold is absolute, so the exponent sees the scale of the law as well as its shape.
      Measured α − 1 = 2.691 (exact) against 2.701 (SDE, +0.4 %, z = +0.6) and 2.663 (SGD, −1.0 %, z = −2.0),
      with standard errors of 0.5 % from 16 independent groups of runs; three other seeds give z between −1.3
      and +3.0. Bound: 4 standard errors.

    Planted bugs: 𝒟 × 1.03 in the singular-value SDE (drift and noise) gives z = −5.4; the injected SGD noise
    variance × 1.03 z = −8.4; the hard-edge term 𝒟(M − N)/(2s) dropped z = +23; the level repulsion dropped
    z = +9.8. Not caught: the noise term alone × 1.03 with the drift's 𝒟 unchanged (z = −0.2), which moves
    the scale of the law by only 1/M of 3 %.
    """
    sde = kind == "sde_singular_values"
    cfg = _noise_config(512, **({"solver.level": "singular_values", "solver.substeps": 8} if sde else {}))
    ds = api.solve(cfg) if sde else api.simulate(cfg)
    step = LR / 8 if sde else LR
    runs = ds["sv"].dims[0]
    sv = ds["sv"].sel(t=ds["t"] >= STATIONARY_FROM).transpose(runs, "t", "i").values
    lam = sv**2

    tail = fits.tail_fit(lam[:, -1].ravel(), n_boot=50, seed=1)
    assert tail.p_value < 0.1, tail

    exact = _laguerre_sample(step, 20_000)
    u = float(np.quantile(exact, 0.7))
    a_exact, a_run = _hill_above(exact, u) - 1, _hill_above(lam, u) - 1
    groups = np.array([_hill_above(lam[g], u) - 1 for g in np.array_split(np.arange(lam.shape[0]), 16)])
    se_run = groups.std(ddof=1) / np.sqrt(groups.size)
    se_exact = se_run * np.sqrt(lam.size / exact.size)
    gap = a_run - a_exact
    assert abs(gap) < 4 * np.hypot(se_run, se_exact), (kind, a_run, a_exact, se_run)


# ------------------------------------------------------------------------------------------------------------
# diagonal_linear: late-time rate, β histograms, incremental learning
# ------------------------------------------------------------------------------------------------------------

DIAG = {
    "model.family": "diagonal_linear",
    "model.form": "uv",
    "data.alpha": 0.5,
    "data.teacher_variance": 1.0,
    "optim.weight_decay": 0.0,
    "solver.replicas": 0,
}


def _edge_rate(train: np.ndarray, lr: float, start: int) -> float:
    """λ from the train loss over t ≥ ``start`` fitted as c t^{−3/2} (1 − ηλ)^{2t}.

    Near the fixed point the residual relaxes mode by mode, train(t) ∝ ∫ρ(μ)(1 − ημ)^{2t}dμ, and the spectrum
    ρ of X diag(m) Xᵀ/P has a square-root lower edge at λ_min, so train ∝ t^{−3/2}(1 − ηλ_min)^{2t}: the
    t^{−3/2} factor is fitted with its exponent fixed (a plain log-slope reads λ too high by ≈ 3/(4ηt))."""
    t = np.arange(start, train.size)
    slope = np.polyfit(t, np.log(train[start:]) + 1.5 * np.log(t), 1)[0]
    return float((1.0 - np.exp(slope / 2.0)) / lr)


def test_late_time_rate_of_the_solved_dmft_is_the_predicted_edge() -> None:
    """The train loss of the solved DMFT decays at the rate the README states: near the long-time fixed point
    β_∞, train ∝ (1 − ηλ_min)^{2t} (times the t^{−3/2} of a square-root spectral edge), with λ_min the lower
    edge of X diag(m)Xᵀ/P, m = √(a⁴ + 4β_∞²) (``late_time_rate`` of ``fixed_point``; theory/diagonal_linear.md
    §7). a = 1, α = 0.5, Gaussian teacher, no label noise, η = 0.1, T = 100 (train loss down by 10⁵), S =
    2000; fitted on t = 50 … 99.

    Measured λ_fit/λ_min − 1 over five Monte Carlo keys: −0.1 … +6.0 % at S = 2000 (mean +1.9 %, sd 2.1 %),
    −3.1 … +1.2 % at S = 8000; η = 0.05, T = 200: −0.8 … +4.4 %; the sparse teacher −0.2 … +5.1 %; σ_ε = 0.3
    −2.3 … +2.7 %. A plain log-slope (no edge factor) gives +35 %. Bound: 8 %.

    Planted bugs: the response R × 1.03 in the DMFT gives +12 … +17 %; the memory term Σ_{s<t}H(t,s)β̃(s) × 1.03
    makes the train loss stall (rate < 0). Not caught: the sample noise ρ × 1.03 (−2.9 %), which moves the
    fixed point, not the rate.
    """
    p = Params(lr=0.1, init_scale=1.0, alpha=0.5, noise=0.0, weight_decay=0.0, teacher_variance=1.0, sparsity=1.0)
    T, S = 100, 2000
    k_b, k_z = jax.random.split(jax.random.key(0))

    @jax.jit
    def train_loss(p: Params) -> jax.Array:
        sol = causal_solve(p, sample_teacher(k_b, S, p, "gaussian"), jax.random.normal(k_z, (T, S)), form="uv")
        return 0.5 * jax.numpy.diagonal(sol.C_delta)

    train = np.asarray(train_loss(p))
    assert train[-1] < 1e-4 * train[0]  # deep in the late phase
    lam = float(late_time_rate(fixed_point(p, "uv", "gaussian"), p, "uv"))
    fitted = _edge_rate(train, p.lr, T // 2)
    assert abs(fitted / lam - 1) < 0.08, (fitted, lam)
    # the late_rate_vs_init figure reads the rate the same way (it read +35 % with a plain log-slope)
    from dmft.families.diagonal_linear.figures import late_rate

    assert abs(late_rate(train, p.lr, fraction=0.5) / lam - 1) < 0.08


def _hist_chi2(theory: np.ndarray, twin: np.ndarray, bins: int = 20) -> float:
    """χ² of the twin's β histogram (seed, coordinate) against the theory's samples, on ``bins`` equal-probability
    bins of the theory. Variances: the seed-to-seed spread of the twin's bin fractions (coordinates of one network
    are not independent) plus the binomial error of the theory's S samples. ≈ χ²(bins − 1) when both sample
    one law."""
    edges = np.quantile(theory, np.linspace(0.0, 1.0, bins + 1))
    edges[0], edges[-1] = -np.inf, np.inf
    f_th = np.histogram(theory, edges)[0] / theory.size
    f_seed = np.array([np.histogram(row, edges)[0] / row.size for row in twin])
    var = f_seed.var(axis=0, ddof=1) / len(twin) + f_th * (1.0 - f_th) / theory.size
    return float(np.sum((f_seed.mean(axis=0) - f_th) ** 2 / var))


def test_beta_histograms_against_the_twin() -> None:
    """The distribution of β (what the ``beta_hist`` figure draws) of the DMFT's coordinate samples against the
    coordinates of trained networks, at an early (t = 10) and the last (t = 39) snapshot; a = 0.3, α = 0.5,
    sparse teacher (20 %), σ_ε = 0.1, η = 0.1; theory S = 8000 samples; twins d = 200 (32 seeds) and d = 800 (8
    seeds), 6400 coordinates each.

    χ² on 20 equal-probability bins (19 dof; 99.9 % quantile 43.8), measured at t = 10 / 39: d = 200: 19.8 /
    59.7, d = 800: 14.3 / 25.5, a finite-d bias that shrinks (the excess over 19 at t = 39 falls from 41 to 6.5).
    Bound: 43.8 at d = 800 at both snapshots, and at t = 39 the χ² of d = 200 above that of d = 800. The mean
    per-network KS distance to the theory shrinks as d^{−1/2}: 0.068 → 0.037 (bound: ratio > 1.5).

    Planted bug: the theory's snapshots holding β − β* (losses unchanged): χ² = 249 / 50 at d = 800. Not caught:
    3 % errors (ρ × 1.03, R × 1.03, teacher sparsity × 1.03, init scale × 1.03; χ² ≤ 27 at d = 800) and
    snapshots one step late (χ² 22 / 25): at this size a bin is resolved to about 7 %, so the 3 % standard is
    kept by the loss comparisons (tests/test_diagonal_linear_twin.py), not by the histograms.
    """
    cfg = dmft.load_config(
        None,
        {
            **DIAG,
            "model.init_scale": 0.3,
            "data.noise": 0.1,
            "data.prior": "sparse",
            "data.sparsity": 0.2,
            "optim.lr": 0.1,
            "optim.steps": 40,
            "solver.samples": 8000,
            "simulate.snapshots": [10, 39],
        },
    )
    out = _solve.solve_arrays(_solve.params_from_config(cfg), *_solve._solver_args(cfg), _solve.static_of(cfg))
    theory = np.asarray(out["beta"])  # (snapshot, sample)
    chi2, ks = {}, {}
    for d, seeds in ((200, 32), (800, 8)):
        sim = api.simulate(cfg.replace({"simulate.dim": d, "simulate.seeds": seeds}))
        twin = sim["beta"].transpose("t_snap", "seed", "i").values
        for k in range(2):
            chi2[d, k] = _hist_chi2(theory[k], twin[k])
        ks[d] = np.mean([stats.ks_2samp(row, theory[1]).statistic for row in twin[1]])
    assert chi2[800, 0] < 43.8 and chi2[800, 1] < 43.8, chi2
    assert chi2[200, 1] > chi2[800, 1], chi2
    assert ks[200] / ks[800] > 1.5, ks


SMALL_A = (1e-2, 1e-3, 1e-4)


def _crossing_time(curve: np.ndarray, level: float, lr: float) -> float:
    """First τ = ηt at which ``curve`` falls below ``level`` (linear interpolation between steps; NaN if never)."""
    below = np.flatnonzero(curve < level)
    if below.size == 0 or below[0] == 0:
        return float("nan")
    i = below[0]
    return lr * float(i - 1 + (curve[i - 1] - level) / (curve[i - 1] - curve[i]))


BASE_SMALL = dict(lr=0.05, init_scale=1e-2, alpha=0.5, noise=0.3, weight_decay=0.0, teacher_variance=1.0, sparsity=0.1)


def _small_init_dmft(samples: int, steps: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Test loss, train loss and the frozen-field (first-plateau) curve of the DMFT at the init scales
    ``SMALL_A``, with common random numbers (the same teacher samples and noise for every a)."""
    base = Params(**BASE_SMALL)

    @jax.jit
    def run(a_vals: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        k_b, k_z = jax.random.split(jax.random.key(seed))
        bs = sample_teacher(k_b, samples, base, "sparse")
        z = jax.random.normal(k_z, (steps, samples))

        def one(a: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
            p = base._replace(init_scale=a)
            sol = causal_solve(p, bs, z, form="uv")
            frozen = small_init_curve(p, "uv", "sparse", steps)
            return 0.5 * (jax.numpy.diagonal(sol.C_beta) + p.noise**2), 0.5 * jax.numpy.diagonal(sol.C_delta), frozen

        return jax.lax.map(one, a_vals)

    return tuple(np.asarray(x) for x in run(jax.numpy.asarray(SMALL_A)))  # type: ignore[return-value]


def _small_init_twin(dim: int, seeds: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Seed-mean test and train losses of trained networks at the init scales ``SMALL_A`` (one compile)."""
    spec = TwinSpec(dim, dim // 2, steps, "uv", "sparse", (0,))
    keys = jax.random.split(jax.random.key(dim), seeds)
    run = jax.jit(lambda p: jax.vmap(lambda k: train(k, p, spec))(keys))
    outs = [run(Params(**{**BASE_SMALL, "init_scale": jax.numpy.asarray(a)})) for a in SMALL_A]
    return (
        np.array([np.asarray(o["test_loss"]).mean(0) for o in outs]),
        np.array([np.asarray(o["train_loss"]).mean(0) for o in outs]),
    )


def test_incremental_learning_beyond_the_first_plateau_scales_with_log_one_over_a() -> None:
    """Small init (theory/diagonal_linear.md §6.6, §7): a coordinate leaves 0 after τ ≈ log(1/a)/|g|, so the
    whole learning curve, not only its first plateau, is a function of τ/log(1/a) up to O(1) shifts: the time at
    which a loss falls below a level is affine in log(1/a). Sparse teacher (10 %), σ_ε = 0.3, α = 0.5, η = 0.05,
    a = 10⁻², 10⁻³, 10⁻⁴; DMFT with common random numbers, S = 2000, T = 100; twin d = 400, 16 seeds.

    Two levels: the first wave (test loss < 0.45, the support escaping) and beyond the first plateau (train loss
    < 0.1, the support learnt and the off-support coordinates fitting the label noise). At the second level the
    frozen-field model of the first plateau (``small_init_curve``) is already wrong: its test loss there is above
    the DMFT's by more than 0.1 (measured 0.22–0.31), so this is the dynamics after the first plateau.

    Measured, DMFT, the middle init scale against the line through the outer two (relative): first wave −0.3 …
    +0.7 %, second level −4.6 … 0.0 % (S = 2000, four keys; +4.7 % at S = 1000, −2.3 / −1.1 % at S = 8000);
    bounds 2 % and 8 %. Crossing times τ, DMFT against the twin: first wave 0.913, 1.310, 1.688 against 0.899,
    1.279, 1.657 (+1.6 … +2.4 %); second level 1.997, 2.912, 3.831 against 2.012, 2.929, 3.846 (−0.4 … −0.7 %).
    The DMFT's Monte Carlo error dominates: four keys at S = 2000 spread by 13 % at the second level and a =
    10⁻⁴ (3.83 … 4.32; S = 8000: 3.96, 4.03; twins at d = 400 / 1600 with 32 / 8 seeds: 3.89 / 3.83). Bound 15 %.

    Planted bug: the init scale entering as a² in the theory (crossing times twice the twin's). Not caught: 3 %
    errors of the DMFT (ρ × 1.03 moves the crossing times by 0.7 %; the memory term × 1.03 by 0.3 %).
    """
    test, train, frozen = _small_init_dmft(2000, 100)
    twin_test, twin_train = _small_init_twin(400, 16, 100)
    log_inv_a = np.log(1.0 / np.asarray(SMALL_A))
    for curve, twin, level, bound in ((test, twin_test, 0.45, 0.02), (train, twin_train, 0.1, 0.08)):
        tau = np.array([_crossing_time(c, level, 0.05) for c in curve])
        tau_twin = np.array([_crossing_time(c, level, 0.05) for c in twin])
        assert np.all(np.isfinite(tau)) and np.all(np.isfinite(tau_twin)), (level, tau, tau_twin)
        line = np.polyfit(log_inv_a[[0, 2]], tau[[0, 2]], 1)
        assert abs(tau[1] / np.polyval(line, log_inv_a[1]) - 1) < bound, (level, tau)
        assert np.all(np.abs(tau / tau_twin - 1) < 0.15), (level, tau, tau_twin)
        if level == 0.1:
            for c, f, t in zip(test, frozen, tau, strict=True):
                k = int(round(t / 0.05))
                assert f[k] > c[k] + 0.1, (f[k], c[k])
