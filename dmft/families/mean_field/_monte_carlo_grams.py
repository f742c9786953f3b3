"""Level 2 of the Monte Carlo mean-field DMFT: spike Grams of the hidden matrices from single-site samples at the
converged order parameters (spectra.md §6c, mean_field.md §8), for the outlier equation of :mod:`._spectra`."""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from solvers.single_site import chunked_average

from ...spectra.outliers import Grams
from ._mc_engine import _antithetic, _chunk_stats, _delta, _factors, _Hyper, _masks, _Static, _static
from ._types import MeanFieldSolution

__all__ = ["monte_carlo_grams", "MonteCarloGrams", "MC_GRAM_THRESHOLD"]

#: Eigen-threshold of the reduced spike basis (``threshold`` of ``outlier_singular_values`` /
#: ``hidden_layer_outliers``) to use with Monte Carlo Grams. With the default 1e-10, spike directions whose Gram
#: eigenvalue is at the Monte Carlo noise level are kept and create spurious outliers just above the edge (ReLU,
#: depth 2, tP = 80 spikes, S = 4000: "outliers" 1.84 where the N = 2048 twin has none; 1.41 at S = 16000); 1e-3
#: removes them and moves true outliers by < 0.005 (linear φ vs closed form, tanh vs twin).
MC_GRAM_THRESHOLD = 1e-3


class MonteCarloGrams(NamedTuple):
    """Spike Grams of the hidden matrices M^1..M^{L−1} (leading axis: layer ℓ − 1), per requested step.

    Spike index k = (s, μ), time-major, s < T, μ < P (training points), so the Grams are (TP, TP); at step t
    only the leading t·P block is kept (zeros elsewhere, which the eigen-thresholded reduction drops).
    ``grams`` fields: (L−1, n_steps, TP, TP); ``c``: C = diag(ηγ0Δ_μ(s)/P) masked likewise, (n_steps, TP, TP);
    ``steps``: the steps; ``boot``: bootstrap replicates (n_boot, L−1, n_steps, TP, TP) over sample blocks
    (None without bootstrap); ``consistency``: max|ΦᵀZ − (GᵀY)ᵀ| per layer and step (Monte Carlo size).
    Normalization (spectra.md §6c): M^ℓ(t) = M^ℓ(0) + N⁻¹GCΦᵀ, Grams divided by N.
    """

    grams: Grams
    c: Float[Array, "n_steps k k"]
    steps: Array
    boot: Grams | None
    consistency: Float[Array, "Lm1 n_steps"]


def monte_carlo_grams(
    kx: Float[Array, "M M"],
    y: Float[Array, " P"],
    solution: MeanFieldSolution,
    *,
    activation: str,
    depth: int,
    gamma0: float,
    sigma: float,
    sigma_w: float,
    lr: float,
    key: Array,
    samples: int = 4000,
    steps_at: Array | None = None,
    bootstrap: int = 0,
    chunk: int | None = None,
    factor: str = "cholesky",
    jitter: float = 1e-10,
) -> MonteCarloGrams:
    """Level-2 Grams of each hidden matrix from single-site samples at the order parameters of ``solution``.

    For M^ℓ (ℓ = 1..L−1): G_k = g^{ℓ+1}_μ(s), Φ_k = φ(h^ℓ_μ(s)), Y = χ^{ℓ+1} = u^{ℓ+1} + A^ℓg^{ℓ+1}, Z = ξ^ℓ =
    r^ℓ + B^ℓφ^ℓ (the bulk parts of h^{ℓ+1} and z^ℓ), and GᵀG/N = G^{ℓ+1}, ΦᵀΦ/N = Φ^ℓ, GᵀY/N = ⟨gχᵀ⟩, YᵀY/N =
    ⟨χχᵀ⟩, ΦᵀZ/N = ⟨φξᵀ⟩, ZᵀZ/N = ⟨ξξᵀ⟩, C = diag(ηγ0Δ_μ(s)/P) (spectra.md §6c). One Monte Carlo pass (all
    six from the same samples); ``bootstrap`` > 0 adds replicates resampling blocks of samples (the chunks).
    """
    if depth < 2:
        raise ValueError("monte_carlo_grams: hidden matrices exist for depth ≥ 2")
    kx = jnp.asarray(kx, dtype=float)
    y = jnp.asarray(y, dtype=float)
    T = solution.f.shape[0]
    st = _static(kx, y, activation, depth, T, samples, chunk, "stein", "exact", factor)
    steps_at = jnp.arange(T) if steps_at is None else jnp.asarray(steps_at, dtype=int)
    hp = _Hyper(kx, y, *(jnp.asarray(v, dtype=float) for v in (gamma0, sigma, sigma_w, lr)), key)
    return _grams(hp, solution, steps_at, st=st, samples=int(samples), bootstrap=int(bootstrap), jitter=jitter)


@partial(jax.jit, static_argnames=("st", "samples", "bootstrap", "jitter"))
def _grams(
    hp: _Hyper, sol: MeanFieldSolution, steps_at: Array, *, st: _Static, samples: int, bootstrap: int,
    jitter: float,
) -> MonteCarloGrams:
    T, M, L, P = st.T, st.M, st.depth, st.P
    tm = T * M
    flat = lambda a: a.reshape(a.shape[0], tm, tm)  # noqa: E731
    x = {
        "corr": {"Phi": flat(sol.Phi[1:L]), "G": flat(sol.G[1:L]), "f": sol.f},
        "resp": {"A": flat(sol.A[1:]), "B": flat(sol.B[:-1])},
    }
    sl, cm = _masks(T, M)
    factors = _factors(x, hp, st, jitter)

    def stat(src: dict, w: Array) -> tuple[dict, dict]:
        sums, _ = _chunk_stats(src, w, x, hp, st, final=True, grams=True)
        keep = {k: sums[k] for k in ("Phi", "G", "gy", "yy", "pz", "zz")}
        return keep, (keep if bootstrap else {})

    means, per = chunked_average(
        stat, hp.key, factors, samples=samples, chunk=st.chunk, antithetic=_antithetic(st)
    )
    train = (jnp.arange(M) < P)
    idx = jnp.nonzero(jnp.tile(train, T), size=T * P)[0]  # (s, μ < P), time-major
    sub = lambda a: a[..., idx[:, None], idx[None, :]]  # noqa: E731

    full = _layer_grams_sel(means, L, sub)
    delta = _delta(sol.f, hp.y, P, st.thr)[:, :P].reshape(-1)
    c = jnp.diag(hp.lr * hp.gamma0 * delta / P)
    mask = (jnp.arange(T * P)[None, :] < (steps_at[:, None] * P)).astype(float)  # (n_steps, TP)
    mm = mask[:, :, None] * mask[:, None, :]
    at_steps = lambda g: Grams(*(a[:, None] * mm[None] for a in g))  # noqa: E731
    grams = at_steps(full)
    consistency = jnp.max(jnp.abs(grams.PhitZ - jnp.swapaxes(grams.GtY, -1, -2)), axis=(-1, -2))
    boot = None
    if bootstrap:
        nb = per["Phi"][0].shape[0]
        kb = jax.random.fold_in(hp.key, 77_777)
        pick = jax.random.randint(kb, (bootstrap, nb), 0, nb)
        def rep(ix: Array) -> Grams:
            m = jax.tree_util.tree_map(lambda a: jnp.sum(a[ix], axis=0) / samples, per)
            return at_steps(_layer_grams_sel(m, L, sub))
        boot = jax.lax.map(rep, pick)
    return MonteCarloGrams(grams, c[None] * mm, steps_at, boot, consistency)


def _layer_grams_sel(m: dict, L: int, sub: Any) -> Grams:
    """Grams of M^ℓ, ℓ = 1..L−1, from per-layer averages (lists over layers 1..L; gy, yy over 2..L; pz, zz over
    1..L−1)."""
    return Grams(
        GtG=sub(jnp.stack([m["G"][ell] for ell in range(1, L)])),
        GtY=sub(jnp.stack(m["gy"])),
        YtY=sub(jnp.stack(m["yy"])),
        PhitPhi=sub(jnp.stack([m["Phi"][ell - 1] for ell in range(1, L)])),
        PhitZ=sub(jnp.stack(m["pz"])),
        ZtZ=sub(jnp.stack(m["zz"])),
    )
