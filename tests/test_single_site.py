"""The generic Monte Carlo single-site engine (solvers/single_site.py) on toy problems with known answers.

Toy process: sources x ~ N(0, Σ) on n = T time points and the causal scan y(t) = a·ψ(y(t−1)) + x(t). For ψ = id,
y = Lx with L = (I − aS)⁻¹ (S: the shift), so ⟨yyᵀ⟩ = LΣLᵀ and ⟨∂y/∂x⟩ = L exactly.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from solvers.single_site import (
    chunked_average,
    damped_iteration,
    gaussian_sources,
    mean_jacobian,
    pinv_psd,
    psd_factor,
    stein_response,
)

T = 8
A = 0.6


def _scan(x, psi=lambda v: v):
    def step(y, xt):
        yn = A * psi(y) + xt
        return yn, yn

    return jax.lax.scan(step, jnp.zeros((), x.dtype), x)[1]


def _transfer():
    return np.linalg.inv(np.eye(T) - A * np.eye(T, k=-1))


def _cov(key, rank=T):
    b = np.asarray(jax.random.normal(key, (T, rank)))
    return b @ b.T / rank + (0.0 if rank < T else 0.2 * np.eye(T))


@pytest.mark.parametrize("method", ["eigh", "cholesky"])
def test_factor_reproduces_covariance_also_rank_deficient(key, method):
    for rank in (T, 3):
        cov = _cov(key, rank)
        f = psd_factor(jnp.asarray(cov), jitter=1e-12, method=method)
        np.testing.assert_allclose(f @ f.T, cov, atol=1e-8 * np.abs(cov).max())
    if method == "cholesky":  # causal: leading rows depend only on the leading block
        cov2 = cov.copy()
        cov2[-1, -1] += 5.0
        f2 = psd_factor(jnp.asarray(cov2), jitter=1e-12, method=method)
        np.testing.assert_allclose(f2[:-1, :-1], f[:-1, :-1], atol=1e-6)


def test_sources_and_chunked_averages_converge_like_inverse_sqrt(key):
    """⟨yyᵀ⟩ of the linear scan → LΣLᵀ with error ∝ S^{-1/2}; chunking does not change the numbers."""
    cov = _cov(key)
    fac = {"x": psd_factor(jnp.asarray(cov))}
    L = _transfer()
    exact = L @ cov @ L.T

    def stat(src, w):
        y = jax.vmap(_scan)(src["x"])
        return (y * w[:, None]).T @ y, jnp.sum(w)

    errs = []
    for s in (1000, 16000):
        m, per = chunked_average(stat, jax.random.key(3), fac, samples=s, chunk=500)
        assert float(jnp.sum(per)) == s
        errs.append(float(jnp.max(jnp.abs(m - exact))) / np.abs(exact).max())
    assert errs[1] < errs[0] / 2  # √16 = 4 expected; 2 leaves room for one unlucky draw
    assert errs[1] < 0.03
    # the first n chunks are the same for every sample count (staged counts refine, never redraw)
    a = gaussian_sources(jax.random.fold_in(jax.random.key(3), 0), fac, 500)["x"]
    m1, _ = chunked_average(lambda src, w: ((src["x"] * w[:, None]).sum(0), 0.0), jax.random.key(3), fac,
                            samples=500, chunk=500)
    np.testing.assert_allclose(m1, a.mean(0), atol=1e-12)


def test_jvp_response_exact_and_stein_agrees(key):
    """Linear scan: the mean Jacobian is L for every sample; Stein ⟨yxᵀ⟩Σ⁺ → L. Nonlinear ψ = tanh: jvp and
    Stein estimate the same ⟨∂y/∂x⟩ (difference shrinks with S)."""
    cov = _cov(key)
    fac = {"x": psd_factor(jnp.asarray(cov))}
    L = _transfer()

    def stat_lin(src, w):
        x = src["x"]
        y = jax.vmap(_scan)(x)
        return {"jac": mean_jacobian(_scan, x, w), "cross": (y * w[:, None]).T @ x}, None

    m, _ = chunked_average(stat_lin, key, fac, samples=4000, chunk=500)
    np.testing.assert_allclose(m["jac"], L, atol=1e-12)
    np.testing.assert_allclose(stein_response(m["cross"], jnp.asarray(cov)), L, atol=0.1)

    scan_t = lambda x: _scan(x, jnp.tanh)  # noqa: E731

    def stat_tanh(src, w):
        x = src["x"]
        y = jax.vmap(scan_t)(x)
        return {"jac": mean_jacobian(scan_t, x, w), "cross": (y * w[:, None]).T @ x}, None

    gaps = []
    for s in (1000, 16000):
        m, _ = chunked_average(stat_tanh, key, fac, samples=s, chunk=1000)
        gaps.append(float(jnp.max(jnp.abs(stein_response(m["cross"], jnp.asarray(cov)) - m["jac"]))))
    assert gaps[1] < gaps[0] / 2 and gaps[1] < 0.05
    assert float(jnp.max(jnp.abs(m["jac"] - L))) > 0.05  # tanh really differs from the linear answer


def test_pinv_drops_null_directions(key):
    cov = _cov(key, rank=3)
    p = pinv_psd(jnp.asarray(cov), rcond=1e-10)
    np.testing.assert_allclose(cov @ p @ cov, cov, atol=1e-8)
    np.testing.assert_allclose(p, np.linalg.pinv(cov, rcond=1e-10, hermitian=True), atol=1e-6)


def _toy_fixed_point(b):
    """C = L(bC + I)Lᵀ (the linear toy with sources x ~ N(0, bC + I)), by direct iteration in numpy."""
    L = _transfer()
    c = np.zeros((T, T))
    for _ in range(500):
        c = L @ (b * c + np.eye(T)) @ L.T
    return c


@pytest.mark.parametrize("mixing", [1.0, 0.5])
def test_damped_iteration_reaches_the_self_consistent_correlation(mixing):
    """x = C; F(C) = ⟨yyᵀ⟩ with x ~ N(0, bC + I) (Cholesky sources, common random numbers): converges to the
    closed-form fixed point within Monte Carlo error, residual below tol, staged samples, averaging."""
    b = 0.1
    exact = _toy_fixed_point(b)
    key = jax.random.key(7)

    def update(x, samples, final):
        fac = {"x": psd_factor(b * x["C"] + jnp.eye(T), method="cholesky")}

        def stat(src, w):
            y = jax.vmap(_scan)(src["x"])
            return (y * w[:, None]).T @ y, None

        m, _ = chunked_average(stat, key, fac, samples=samples, chunk=1000)
        return {"C": m}, {"final": final}

    res = jax.jit(
        lambda x0: damped_iteration(update, x0, mixing={"C": mixing}, stages=((2000, 200), (8000, 200)),
                                    tol=1e-10, average=3)
    )({"C": jnp.zeros((T, T))})
    assert bool(res.converged) and float(res.residual) < 1e-10
    assert bool(res.aux["final"])
    its = np.asarray(res.iterations)
    assert its[1] < its[0]  # the second stage starts near the fixed point
    err = np.abs(np.asarray(res.x["C"]) - exact).max() / np.abs(exact).max()
    assert err < 0.05
    hist = np.asarray(res.history)
    assert np.isnan(hist).sum() > 0 and np.nanmin(hist) < 1e-10
