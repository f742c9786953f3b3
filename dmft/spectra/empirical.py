"""Empirical spectra of sampled matrices, normalised like the laws of :mod:`dmft.spectra.bulk`, and samplers.

* :func:`sample_gaussian`: an n×m matrix with iid N(0, σ²/m) entries (q = n/m).
* :func:`singular_values`: the n values √eig(MMᵀ) (zeros appended when n > m), the sample of
  :func:`dmft.spectra.bulk.sv_cdf`.
* :func:`spectral_histogram`, :func:`ks_distance`: comparisons of a sample with a law.
* :func:`grams_from_spikes`, :func:`adaptive_spikes`: spikes that depend on X0, and their six Grams (spectra.md
  §3, §12 (i)).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

import dmft._jax  # noqa: F401  (refuses known-bad JAX versions)
from solvers.linalg import eigvalsh

from .outliers import Grams

__all__ = [
    "sample_gaussian",
    "singular_values",
    "spectral_histogram",
    "ks_distance",
    "grams_from_spikes",
    "adaptive_spikes",
]


def sample_gaussian(key: PRNGKeyArray, n: int, m: int, sigma: ArrayLike = 1.0) -> Float[Array, "n m"]:
    """n×m matrix with iid N(0, σ²/m) entries: aspect ratio q = n/m, singular-value edge σ(1 + √q)."""
    return sigma * jax.random.normal(key, (n, m), dtype=float) / jnp.sqrt(m)


@jax.jit
def singular_values(m: Float[Array, "n k"]) -> Float[Array, " n"]:
    """The n singular values of M (descending), zeros appended when n > k: the law of √eig(MMᵀ).

    Computed as √eig of the smaller of MMᵀ, MᵀM (symmetric eigensolver: several times faster than an SVD on CPU
    and batch-friendly). Absolute error ~ 1e-8·s_max: negligible for spectra and outliers, not for tiny values.
    """
    n, k = m.shape
    lam = eigvalsh(m @ m.T if n <= k else m.T @ m)[::-1]
    s = jnp.sqrt(jnp.maximum(lam, 0.0))
    return jnp.concatenate([s, jnp.zeros(max(n - k, 0), s.dtype)])


def spectral_histogram(
    sv: Float[ArrayLike, " n"], bins: Float[ArrayLike, " b+1"], total: int | None = None
) -> Float[Array, " b"]:
    """Histogram density: counts/(total·width) per bin (total defaults to len(sv), the normalisation of the laws)."""
    sv, bins = jnp.asarray(sv), jnp.asarray(bins)
    counts, _ = jnp.histogram(sv, bins)
    return counts / ((sv.shape[0] if total is None else total) * jnp.diff(bins))


def ks_distance(sample: Float[ArrayLike, " n"], cdf: Callable[[Array], Array]) -> Float[Array, ""]:
    """Kolmogorov–Smirnov distance sup_x |F_n(x) − F(x)| between a sample and a CDF F (atoms allowed).

    Both one-sided limits are compared at every sample point: F_n(x) with F(x), and F_n(x⁻) with F(x⁻), the
    left limit taken as F(x − 10⁻¹²(1 + |x|)) (a sample of n ≪ 10¹² points cannot resolve the difference).
    """
    x = jnp.sort(jnp.asarray(sample))
    n = x.shape[0]
    after = jnp.searchsorted(x, x, side="right").astype(x.dtype) / n
    before = jnp.searchsorted(x, x, side="left").astype(x.dtype) / n
    f_after, f_before = cdf(x), cdf(x - 1e-12 * (1 + jnp.abs(x)))
    return jnp.maximum(jnp.max(jnp.abs(after - f_after)), jnp.max(jnp.abs(f_before - before)))


def grams_from_spikes(
    x0: Float[Array, "n m"], g: Float[Array, "n kl"], phi: Float[Array, "m kr"], scale: ArrayLike = 1.0
) -> Grams:
    """The six Grams of §3 from sampled spikes, Y = X0Φ and Z = X0ᵀG, all divided by ``scale`` (§5)."""
    y, z = x0 @ phi, x0.T @ g
    return Grams(*(a / scale for a in (g.T @ g, g.T @ y, y.T @ y, phi.T @ phi, phi.T @ z, z.T @ z)))


def adaptive_spikes(
    key: PRNGKeyArray, x0: Float[Array, "n m"], rank: int, gain: ArrayLike = 2.0
) -> tuple[Float[Array, "n rank"], Float[Array, "m rank"]]:
    """Spikes that depend on the bulk (§12 (i)): each new pair is a nonlinear function of X0 times the previous.

        g_0, φ_0 ~ N(0, I),   g_{j+1} = tanh(gain·X0 φ_j) + g_j/2,   φ_{j+1} = tanh(gain·X0ᵀ g_j) + φ_j/2,

    so g_j and φ_j are correlated with X0's top singular directions and with each other; entries are O(1).
    """
    n, m = x0.shape
    kg, kf = jax.random.split(key)
    g0 = jax.random.normal(kg, (n,), dtype=float)
    f0 = jax.random.normal(kf, (m,), dtype=float)

    def step(carry: tuple[Array, Array], _: None) -> tuple[tuple[Array, Array], tuple[Array, Array]]:
        g, f = carry
        nxt = (jnp.tanh(gain * (x0 @ f)) + 0.5 * g, jnp.tanh(gain * (x0.T @ g)) + 0.5 * f)
        return nxt, (g, f)

    _, (gs, fs) = jax.lax.scan(step, (g0, f0), None, length=rank)
    return gs.T, fs.T
