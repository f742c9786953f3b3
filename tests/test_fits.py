"""dmft.spectra.fits: tail exponents, gamma MLE, level spacings and analyse_matrix on synthetic data and user
input."""

from __future__ import annotations

import json
import math

import jax.numpy as jnp
import numpy as np
import pytest

from dmft.spectra import fits


def _pareto_with_body(rng: np.random.Generator, alpha: float, n_tail: int = 1000) -> np.ndarray:
    """A uniform body on [0.2, 1) and a Pareto(α) tail from x_min = 1 (density ∝ x^{−α})."""
    body = rng.uniform(0.2, 1.0, size=1000)
    tail = (1 - rng.uniform(size=n_tail)) ** (-1 / (alpha - 1))
    return np.concatenate([body, tail])


@pytest.mark.parametrize("seed", range(5))
def test_tail_fit_recovers_a_known_exponent(seed: int) -> None:
    """α = 3 from 2000 values with a non-power-law body: |α̂ − 3| < 4 se (over 20 seeds the standardised error
    has mean 0.02 and sd 1.32: the KS choice of x_min adds ~30 % to the Fisher se), x_min within 35 % of the
    true onset 1, no upper cut-off on a clean tail (x_max = ∞)."""
    fit = fits.tail_fit(_pareto_with_body(np.random.default_rng(seed), 3.0), n_boot=0)
    assert abs(fit.alpha - 3.0) < 4 * fit.alpha_err
    assert 0.9 < fit.xmin < 1.35
    assert math.isinf(fit.xmax)
    assert fit.alpha_err == pytest.approx((fit.alpha - 1) / math.sqrt(fit.n_tail), rel=1e-6)


def test_upper_cutoff_removes_spikes_and_bootstrap_accepts_the_power_law() -> None:
    """Three spikes far above a Pareto(3) tail are cut off (x_max = the smallest spike) without moving α̂
    beyond its error; the CSN bootstrap accepts the power law (measured α̂ = 2.94 ± 0.08, p = 0.82 with 50
    resamples)."""
    rng = np.random.default_rng(0)
    values = np.concatenate([_pareto_with_body(rng, 3.0), [1e4, 3e4, 1e5]])
    fit = fits.tail_fit(values, n_boot=50, seed=1)
    assert fit.xmax == 1e4
    assert abs(fit.alpha - 3.0) < 4 * fit.alpha_err
    assert fit.p_value > 0.1


@pytest.mark.parametrize("sampler", ["halfnormal", "exponential"])
def test_bootstrap_rejects_tails_that_are_not_power_laws(sampler: str) -> None:
    """3000 half-normal or exponential values: p < 0.1 (measured 0.0 for both with 50 resamples)."""
    rng = np.random.default_rng(0)
    values = np.abs(rng.normal(size=3000)) if sampler == "halfnormal" else rng.exponential(size=3000)
    assert fits.tail_fit(values, n_boot=50, seed=1).p_value < 0.1


def test_hill_estimator_on_a_pure_pareto_sample() -> None:
    """k = 2000 of 4000 Pareto(2.5) values: se (α − 1)/√k = 0.034; |α̂ − 2.5| < 4 se."""
    x = (1 - np.random.default_rng(3).uniform(size=4000)) ** (-1 / 1.5)
    assert abs(fits.hill_estimator(x, 2000) - 2.5) < 4 * 1.5 / math.sqrt(2000)


def test_gamma_fit_recovers_shape_and_rate() -> None:
    """Gamma(k = 4.75, rate 5), 2000 draws (the provisional 2507.12709 law for M − N = 16, η = 0.05)."""
    lam = np.random.default_rng(4).gamma(4.75, 1 / 5.0, size=2000)
    fit = fits.gamma_fit(lam)
    assert abs(fit.shape - 4.75) < 4 * fit.shape_err
    assert fit.rate == pytest.approx(5.0, rel=0.08)
    assert fit.p_value > 0.01


def test_spacings_goe_versus_poisson() -> None:
    """A 400×400 GOE matrix unfolded with the semicircle: KS to the Wigner surmise 0.038, to Poisson 0.25, ⟨r⟩
    0.534 (GOE 0.531, se ≈ 0.015); uniform iid levels: the reverse (measured 0.19, 0.042, ⟨r⟩ 0.386; Poisson
    0.386)."""
    rng = np.random.default_rng(0)
    n = 400
    a = rng.normal(size=(n, n))
    evals = np.linalg.eigvalsh((a + a.T) / 2)
    radius = math.sqrt(2 * n)

    def semicircle_cdf(x: np.ndarray) -> np.ndarray:
        u = np.clip(x / radius, -1, 1)
        return 0.5 + (np.arcsin(u) + u * np.sqrt(1 - u**2)) / math.pi

    goe = fits.spacing_fit(evals, cdf=semicircle_cdf)
    assert goe.ks_wigner < 0.07 and goe.ks_poisson > 0.15
    assert abs(goe.mean_ratio - fits.GOE_MEAN_RATIO) < 0.045
    poisson = fits.spacing_fit(np.sort(rng.uniform(size=400)))
    assert poisson.ks_poisson < 0.1 and poisson.ks_wigner > 0.15
    assert abs(poisson.mean_ratio - fits.POISSON_MEAN_RATIO) < 0.045
    s = np.linspace(0, 6, 60001)
    assert np.sum(fits.wigner_surmise_pdf(s)) * (s[1] - s[0]) == pytest.approx(1.0, abs=1e-6)
    assert np.sum(s * fits.wigner_surmise_pdf(s)) * (s[1] - s[0]) == pytest.approx(1.0, abs=1e-6)


class _FakeTensor:
    """Duck-typed stand-in for a PyTorch tensor (``.detach().cpu().numpy()``)."""

    def __init__(self, a: np.ndarray) -> None:
        self._a = a

    def detach(self) -> _FakeTensor:
        return self

    def cpu(self) -> _FakeTensor:
        return self

    def numpy(self) -> np.ndarray:
        return self._a


def test_analyse_matrix_accepts_user_inputs(tmp_path) -> None:
    """The same matrix as NumPy, JAX, a tensor-like object and an .npy file gives the same analysis; a spike
    of strength 4 above an MP bulk (edge 1 + √q) is counted; the result is strict JSON."""
    rng = np.random.default_rng(0)
    m, n = 300, 200
    w = rng.normal(size=(m, n))
    u, v = rng.normal(size=m), rng.normal(size=n)
    w += 4 * math.sqrt(max(m, n)) * np.outer(u / np.linalg.norm(u), v / np.linalg.norm(v))
    path = tmp_path / "layer.npy"
    np.save(path, w)
    results = [
        fits.analyse_matrix(x, n_boot=10) for x in (w, jnp.asarray(w), _FakeTensor(w), path, str(path))
    ]
    for r in results[1:]:
        assert r == results[0]
    r = results[0]
    assert r["shape"] == [300, 200] and r["q"] == pytest.approx(2 / 3)
    assert r["n_above_edge"] == 1
    assert set(r) >= {"tail", "gamma", "spacing"}
    json.dumps(r, allow_nan=False)
    conv = fits.analyse_matrix(rng.normal(size=(16, 8, 3, 3)), n_boot=0)
    assert conv["shape"] == [16, 72]


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.ones(5), "need at least 2 dimensions"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), "NaN or inf"),
        ("/nonexistent/w.npy", "not found"),
        (np.ones((3, 1)), "at least 2 rows and 2 columns"),
    ],
)
def test_bad_matrix_input(bad: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fits.analyse_matrix(bad)


def test_npz_archive_is_refused(tmp_path) -> None:
    path = tmp_path / "w.npz"
    np.savez(path, a=np.ones((3, 3)))
    with pytest.raises(ValueError, match="npz"):
        fits.as_matrix(path)
