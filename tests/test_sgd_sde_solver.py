"""solvers.sde: Euler–Maruyama against exact recursions, the 1-D stationary law, and its weak order."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import dmft._jax  # noqa: F401
from dmft.families.sgd_sde import radial_stationary_pdf
from solvers.sde import euler_maruyama


def test_records_and_deterministic_steps() -> None:
    """No noise: x_k = (1 − h)^k x0 exactly, recorded at k = 0, 3, 6, ..."""
    x0 = jnp.array([1.0, -2.0])
    rec, xf = euler_maruyama(
        lambda t, x, a: -x,
        lambda t, x, a: jnp.zeros(()),
        x0,
        jax.random.key(0),
        0.1,
        n_records=5,
        record_every=3,
    )
    k = np.arange(5) * 3
    np.testing.assert_allclose(np.asarray(rec), (0.9**k)[:, None] * np.asarray(x0)[None], rtol=1e-13)
    np.testing.assert_allclose(np.asarray(xf), np.asarray(rec[-1]), rtol=0)


def _ou_second_moment(h: float, n_steps: int, paths: int, seed: int) -> float:
    """Monte Carlo E x² at τ = n_steps h of dx = −x dτ + dB from x0 = 1."""
    keys = jax.random.split(jax.random.key(seed), paths)

    def one(k: jax.Array) -> jax.Array:
        _, xf = euler_maruyama(
            lambda t, x, a: -x, lambda t, x, a: jnp.ones(()), jnp.ones(()), k, h, 2, n_steps
        )
        return xf

    return float(jnp.mean(jax.vmap(one)(keys) ** 2))


def test_ou_matches_exact_em_recursion_and_weak_order_one() -> None:
    """E x_k² of EM on the OU process obeys m_{k+1} = (1 − h)² m_k + h exactly (checks the √h noise scaling);
    its error against the exact e^{−2τ} + (1 − e^{−2τ})/2 at τ = 1 is first order in h (log–log slope ≈ 1)."""
    paths = 100_000
    exact = math.exp(-2) + 0.5 * (1 - math.exp(-2))
    errors = []
    hs = [0.2, 0.1, 0.05]
    for h in hs:
        n = round(1 / h)
        mc = _ou_second_moment(h, n, paths, seed=1)
        a = (1 - h) ** 2
        em = a**n + h * (1 - a**n) / (1 - a)
        # MC standard error of x² (Var x² = 2 m² for a centred-ish Gaussian; bound by 2 m²): ≤ 0.0026 here
        se = math.sqrt(2 * em**2 / paths)
        assert abs(mc - em) < 4 * se
        errors.append(em - exact)
    slope = np.polyfit(np.log(hs), np.log(errors), 1)[0]
    assert 0.9 < slope < 1.1


def test_radial_process_reaches_its_stationary_law() -> None:
    """ds = (c/s − b s) dτ + √(2d) dβ, reflected at 0, has p(s) ∝ s^{c/d} e^{−b s²/(2d)} (sgd_sde.md §3).

    c = 1.5, b = 1, d = 0.5: p ∝ s³e^{−s²}, E s² = 2. With h = 0.005 the EM bias is O(h) ≈ 1 %; 4000 paths
    give measured D = 0.011 (E s² = 1.995); the bound 0.03 allows for the O(h) bias and seeds, and a scheme
    with the wrong noise scaling (√(2d)h instead of √(2dh)) gives D ≈ 0.48.
    """
    c, b, d = 1.5, 1.0, 0.5
    keys = jax.random.split(jax.random.key(3), 4000)

    def one(k: jax.Array) -> jax.Array:
        _, sf = euler_maruyama(
            lambda t, s, a: c / s - b * s,
            lambda t, s, a: jnp.sqrt(2 * d) * jnp.ones(()),
            jnp.ones(()),
            k,
            0.005,
            2,
            2000,
            project=jnp.abs,
        )
        return sf

    s = np.asarray(jax.vmap(one)(keys))
    grid = np.linspace(1e-6, 6, 20001)
    cdf = np.cumsum(radial_stationary_pdf(grid, c, b, d)) * (grid[1] - grid[0])
    d_ks = stats.kstest(s, lambda x: np.interp(x, grid, cdf)).statistic
    assert d_ks < 0.03
    assert np.mean(s**2) == pytest.approx(2.0, rel=0.05)
