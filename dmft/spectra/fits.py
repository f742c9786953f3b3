"""Fits of empirical spectra: power-law tails with explicit cut-offs, level-spacing statistics against the
Wigner surmise, and gamma maximum likelihood (theory/sgd_sde.md §3, §4, §5, §8). NumPy/SciPy, float64.

Every function takes the values (or the matrix) as a NumPy array, a JAX array, anything with ``.numpy()`` (a
PyTorch tensor on the CPU), or a path to a ``.npy`` file (e.g. ``np.save("w.npy",
layer.weight.detach().numpy())``); :func:`analyse_matrix` runs all fits on one weight matrix and returns a
JSON-friendly dict.

**Tail exponent.** The density of the values x (for a matrix: λ = s²) is fitted on a window [x_min, x_max] by
the doubly truncated power law p(x) ∝ x^{−α}, whose maximum-likelihood α solves E_α[ln x] = mean ln x over the
window (x_max = ∞ gives the Hill/Pareto estimator α = 1 + 1/mean ln(x/x_min)). The cut-offs:

* lower, x_min: the criterion of Clauset, Shalizi & Newman (SIAM Rev. 2009): among the sorted values (at most
  ``max_candidates`` of them, evenly spaced in rank, leaving at least ``min_tail`` points in the window), the
  one that minimises the Kolmogorov–Smirnov distance D between the window's empirical CDF and the fitted law;
* upper, x_max: outlier rejection. With α and x_min fitted, the largest value kept, x_top, is an outlier if a
  Pareto(α, x_min) sample of the window's size would exceed it with probability P(max ≥ x_top) = 1 − (1 −
  (x_top/x_min)^{1−α})^{n_tail} < ``p_outlier`` (default 0.01). Outliers are removed one at a time (at most
  ``max_outliers``), refitting x_min and α with the truncated law below the smallest removed value, which
  becomes x_max; x_max = ∞ when nothing is removed. This keeps spikes (e.g. outliers above a bulk) out of the
  tail fit without giving the fit a second free window edge: choosing x_max by minimising D as well makes any
  smooth tail look like a power law on a short enough window (the bootstrap then no longer rejects half-normal
  or exponential samples of 3000 points);
* goodness of fit: the CSN semi-parametric bootstrap p-value. Each synthetic data set keeps the points outside
  the window (resampled) and draws the window's points from the fitted law; the *whole* procedure is re-run on
  it; p = fraction of synthetic D ≥ observed D. p < 0.1 rejects the power law;
* standard error: 1/√(n_tail Var_α(ln x)) (Fisher information), which is (α − 1)/√n_tail for x_max = ∞.

**Level spacings.** The spectrum is unfolded with a smooth counting function (a given CDF, or a low-degree
polynomial fit of the staircase), the outer ``trim`` fraction at each edge is dropped, and the spacings,
normalised to unit mean, are compared by KS with the Wigner surmise P(s) = (π s/2) e^{−π s²/4} (β = 1) and
with Poisson e^{−s}. The ratio statistic r_i = min(δ_i, δ_{i+1})/max(δ_i, δ_{i+1}) of consecutive gaps needs
no unfolding: ⟨r⟩ ≈ 0.5307 for GOE-like spectra, 2 ln 2 − 1 ≈ 0.3863 for uncorrelated levels (Atas et al.
2013). KS p-values assume independent spacings, which unfolded spacings are not: read them as indicative.

**Gamma.** λ ~ Gamma(k, rate θ) by maximum likelihood: ψ(k̂) − ln k̂ = mean ln λ − ln mean λ, θ̂ = k̂/mean λ,
with se(k̂) = 1/√(n(ψ′(k̂) − 1/k̂)). Given the matrix shape, k̂ is reported against (M − N + 3)/4 (the
provisional law of 2507.12709) and (M − N + 1)/2 (the 1-D reduction).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import optimize, special, stats

__all__ = [
    "GOE_MEAN_RATIO",
    "POISSON_MEAN_RATIO",
    "TailFit",
    "GammaFit",
    "SpacingFit",
    "as_array",
    "as_matrix",
    "matrix_singular_values",
    "tail_fit",
    "hill_estimator",
    "gamma_fit",
    "ratio_statistic",
    "unfolded_spacings",
    "wigner_surmise_pdf",
    "wigner_surmise_cdf",
    "spacing_fit",
    "analyse_matrix",
]

GOE_MEAN_RATIO = 0.5307  # large-N GOE value of ⟨r⟩ (the 3×3 surmise gives 4 − 2√3 ≈ 0.5359)
POISSON_MEAN_RATIO = 2 * math.log(2) - 1


# ------------------------------------------------------------------------------------------------------------
# Input
# ------------------------------------------------------------------------------------------------------------


def as_array(x: Any) -> np.ndarray:
    """Float64 NumPy array from an array, a JAX array, a tensor with ``.numpy()``, or a ``.npy`` path."""
    if isinstance(x, str | Path):
        p = Path(x)
        if not p.is_file():
            raise ValueError(f"matrix file {str(p)!r}: not found")
        try:
            x = np.load(p, allow_pickle=False)
        except ValueError as e:
            raise ValueError(f"matrix file {str(p)!r}: not a plain .npy array ({e})") from None
        if isinstance(x, np.lib.npyio.NpzFile):
            raise ValueError(f"matrix file {str(p)!r}: an .npz archive; save one array with np.save")
    elif hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    elif hasattr(x, "numpy") and not isinstance(x, np.ndarray):
        x = x.numpy()
    arr = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError("values: contain NaN or inf")
    return arr


def as_matrix(x: Any) -> np.ndarray:
    """A 2-D float64 matrix; arrays with more dims (e.g. conv kernels (out, in, kh, kw)) become (out,
    rest)."""
    arr = as_array(x)
    if arr.ndim < 2:
        raise ValueError(f"matrix: has shape {arr.shape}; need at least 2 dimensions")
    if arr.ndim > 2:
        arr = arr.reshape(arr.shape[0], -1)
    if min(arr.shape) < 2:
        raise ValueError(f"matrix: has shape {arr.shape}; need at least 2 rows and 2 columns")
    return arr


def matrix_singular_values(w: Any, normalize: bool = True) -> np.ndarray:
    """Singular values, descending. ``normalize``: first subtract the global mean and divide by
    std(W)·√max(m, n) (2507.12709), so that an iid matrix has the Marchenko–Pastur law with edge 1 + √q."""
    w = as_matrix(w)
    if normalize:
        std = w.std()
        if std == 0:
            raise ValueError("matrix: all entries are equal; cannot normalise")
        w = (w - w.mean()) / (std * math.sqrt(max(w.shape)))
    return np.linalg.svd(w, compute_uv=False)


def _values(x: Any, positive: bool = True) -> np.ndarray:
    v = as_array(x).ravel()
    if positive:
        v = v[v > 0]
    return np.sort(v)


# ------------------------------------------------------------------------------------------------------------
# Truncated power law: in u = ln(x/x_min) ∈ [0, L], the density is ∝ e^{c u} with c = 1 − α.
# ------------------------------------------------------------------------------------------------------------


def _mean_u(c: np.ndarray, big_l: np.ndarray) -> np.ndarray:
    """E u for the density ∝ e^{cu} on [0, L] (L may be inf when c < 0)."""
    c = np.asarray(c, float)
    small = np.abs(c * big_l) < 1e-8
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        cl = np.where(small, 1.0, c * big_l)
        exact = np.where(np.isinf(big_l), -1.0 / c, big_l / (-np.expm1(-cl)) - 1.0 / np.where(c == 0, 1.0, c))
        exact = np.where(np.isfinite(exact), exact, np.where(c > 0, big_l, 0.0))
    finite_l = np.where(np.isinf(big_l), 0.0, big_l)
    return np.where(small, 0.5 * finite_l + c * finite_l**2 / 12, exact)


def _var_u(c: np.ndarray, big_l: np.ndarray) -> np.ndarray:
    """Var u = 1/c² − L²/(4 sinh²(cL/2)) (L²/12 as c → 0; 1/c² for L = ∞)."""
    c = np.asarray(c, float)
    small = np.abs(c * big_l) < 1e-4
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        half = np.where(small, 1.0, 0.5 * c * big_l)
        tail = np.where(
            np.isinf(big_l), 0.0, np.where(np.abs(half) > 300, 0.0, big_l**2 / (4 * np.sinh(half) ** 2))
        )
        exact = 1.0 / np.where(c == 0, 1.0, c) ** 2 - tail
    return np.where(small, np.where(np.isinf(big_l), 0.0, big_l) ** 2 / 12, exact)


def _cdf_u(u: np.ndarray, c: np.ndarray, big_l: np.ndarray) -> np.ndarray:
    """CDF expm1(c u)/expm1(c L) (1 − e^{cu} for L = ∞; u/L as c → 0)."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        small = np.abs(c * big_l) < 1e-10
        fin = np.where(
            small, u / np.where(np.isinf(big_l), 1.0, big_l), np.expm1(c * u) / np.expm1(c * big_l)
        )
        out = np.where(np.isinf(big_l), -np.expm1(c * u), fin)
    return np.clip(out, 0.0, 1.0)


def _solve_alpha(ubar: np.ndarray, big_l: np.ndarray, lo: float = -20.0, hi: float = 60.0) -> np.ndarray:
    """MLE α per window: E_α[u] = ū, by bisection in α (E_α[u] decreases with α)."""
    a_lo = np.full_like(ubar, lo)
    a_hi = np.full_like(ubar, hi)
    a_lo = np.where(np.isinf(big_l), 1.0, a_lo)  # an untruncated power law needs α > 1
    for _ in range(80):
        mid = 0.5 * (a_lo + a_hi)
        too_small = _mean_u(1.0 - mid, big_l) > ubar  # mean too large ⇒ α must grow
        a_lo = np.where(too_small, mid, a_lo)
        a_hi = np.where(too_small, a_hi, mid)
    return 0.5 * (a_lo + a_hi)


@dataclass(frozen=True)
class TailFit:
    """Power-law tail p(x) ∝ x^{−α} on [xmin, xmax] (xmax = inf: no upper cut-off)."""

    alpha: float
    alpha_err: float
    xmin: float
    xmax: float
    n_tail: int
    n_total: int
    ks: float
    p_value: float
    n_boot: int

    def as_dict(self) -> dict[str, float | int]:
        return {k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in asdict(self).items()}


def _fit_xmin(
    x: np.ndarray, xmax: float, min_tail: int, max_candidates: int
) -> tuple[float, float, float, int, float]:
    """KS-minimising x_min for the law truncated at ``xmax`` (values of ``x`` ≥ xmax excluded; ∞:
    untruncated).

    Returns (alpha, var_u, xmin, n_tail, D).
    """
    logx = np.log(x)
    top = int(np.searchsorted(x, xmax, side="left")) if np.isfinite(xmax) else x.size
    last_start = top - min_tail
    if last_start < 0:
        raise ValueError(f"tail fit: need at least min_tail = {min_tail} positive values, got {top}")
    starts = np.unique(np.linspace(0, last_start, min(max_candidates, last_start + 1)).round().astype(int))
    k = top - starts
    csum = np.concatenate([[0.0], np.cumsum(logx[:top])])
    ubar = (csum[top] - csum[starts]) / k - logx[starts]
    big_l = np.full(starts.shape, np.inf) if not np.isfinite(xmax) else np.log(xmax) - logx[starts]
    alpha = _solve_alpha(ubar, big_l)
    c = 1.0 - alpha
    d = np.empty(starts.size)
    for j, (s0, kj) in enumerate(zip(starts, k, strict=True)):
        f = _cdf_u(logx[s0:top] - logx[s0], c[j], big_l[j])
        ranks = np.arange(1, kj + 1)
        d[j] = max(np.max(ranks / kj - f), np.max(f - (ranks - 1) / kj))
    j = int(np.lexsort((-k, d))[0])  # smallest D; ties: the larger window
    return float(alpha[j]), float(_var_u(c[j], big_l[j])), float(x[starts[j]]), int(k[j]), float(d[j])


def _fit_tail(
    x: np.ndarray, min_tail: int, max_candidates: int, p_outlier: float, max_outliers: int
) -> tuple[float, float, float, float, int, float]:
    """x_min by KS, x_max by outlier rejection (module docstring). Returns (alpha, var_u, xmin, xmax, n_tail,
    D)."""
    xmax = np.inf
    for removed in range(max_outliers + 1):
        alpha, var_u, xmin, k, d = _fit_xmin(x, xmax, min_tail, max_candidates)
        if removed == max_outliers or alpha <= 1.0:
            break
        top = x[x.size - removed - 1]
        p_top = -np.expm1(k * np.log1p(-min(1.0, (top / xmin) ** (1.0 - alpha))))
        if p_top >= p_outlier or x.size - removed - 1 < min_tail:
            break
        xmax = top
    return alpha, var_u, xmin, xmax, k, d


def _sample_truncated(
    rng: np.random.Generator, size: int, alpha: float, xmin: float, xmax: float
) -> np.ndarray:
    """Inverse-CDF draws from p(x) ∝ x^{−α} on [xmin, xmax]."""
    c = 1.0 - alpha
    big_l = math.log(xmax / xmin) if np.isfinite(xmax) else math.inf
    p = rng.uniform(size=size)
    if abs(c * big_l) < 1e-10:
        u = p * big_l
    elif math.isinf(big_l):
        u = -np.log1p(-p) / (alpha - 1.0)
    else:
        u = np.log1p(p * np.expm1(c * big_l)) / c
    return xmin * np.exp(u)


def tail_fit(
    values: Any,
    *,
    min_tail: int | None = None,
    max_candidates: int = 100,
    p_outlier: float = 0.01,
    max_outliers: int | None = None,
    n_boot: int = 100,
    seed: int = 0,
) -> TailFit:
    """Power-law tail exponent with explicit cut-offs and a bootstrap goodness of fit (module docstring).

    ``min_tail`` defaults to max(10, n/10) points in the window; ``max_outliers`` (values the upper cut-off
    may remove) to max(1, n/20); ``p_outlier = 0`` disables the upper cut-off. ``n_boot = 0`` skips the
    p-value (NaN).
    """
    x = _values(values)
    n = x.size
    min_tail = max(10, n // 10) if min_tail is None else min_tail
    max_outliers = max(1, n // 20) if max_outliers is None else max_outliers
    args = (min_tail, max_candidates, p_outlier, max_outliers)
    alpha, var_u, xmin, xmax, k, d = _fit_tail(x, *args)
    p_value = math.nan
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        outside = x[(x < xmin) | (x >= xmax)]
        exceed = 0
        for _ in range(n_boot):
            n_in = rng.binomial(n, k / n) if outside.size else n
            synth = _sample_truncated(rng, n_in, alpha, xmin, xmax)
            if outside.size and n - n_in > 0:
                synth = np.concatenate([synth, rng.choice(outside, n - n_in, replace=True)])
            exceed += _fit_tail(np.sort(synth), *args)[5] >= d
        p_value = exceed / n_boot
    return TailFit(
        alpha=alpha,
        alpha_err=float(1.0 / math.sqrt(k * var_u)),
        xmin=xmin,
        xmax=float(xmax),
        n_tail=k,
        n_total=n,
        ks=d,
        p_value=float(p_value),
        n_boot=n_boot,
    )


def hill_estimator(values: Any, k: int) -> float:
    """Hill estimate of the density exponent from the k largest values: α = 1 + k / Σ_{i≤k}
    ln(x_(i)/x_(k+1))."""
    x = _values(values)[::-1]
    if not 1 <= k < x.size:
        raise ValueError(f"hill_estimator: k = {k} must be in [1, {x.size - 1}]")
    return float(1.0 + k / np.sum(np.log(x[:k] / x[k])))


# ------------------------------------------------------------------------------------------------------------
# Gamma
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GammaFit:
    """λ ~ Gamma(shape, rate) by maximum likelihood."""

    shape: float
    shape_err: float
    rate: float
    n: int
    ks: float
    p_value: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def gamma_fit(values: Any) -> GammaFit:
    """Gamma MLE of positive values (module docstring). The KS p-value ignores that k, θ were fitted."""
    lam = _values(values)
    if lam.size < 3:
        raise ValueError(f"gamma fit: need at least 3 positive values, got {lam.size}")
    delta = math.log(lam.mean()) - np.mean(np.log(lam))  # ≥ 0 by Jensen
    if delta <= 1e-14:
        raise ValueError("gamma fit: all values are equal")
    k = optimize.brentq(lambda a: math.log(a) - special.digamma(a) - delta, 1e-8, 1e8, xtol=1e-14, rtol=1e-14)
    rate = k / lam.mean()
    se = 1.0 / math.sqrt(lam.size * (special.polygamma(1, k) - 1.0 / k))
    ks = stats.kstest(lam, stats.gamma(a=k, scale=1.0 / rate).cdf)
    return GammaFit(float(k), float(se), float(rate), int(lam.size), float(ks.statistic), float(ks.pvalue))


# ------------------------------------------------------------------------------------------------------------
# Level spacings
# ------------------------------------------------------------------------------------------------------------


def wigner_surmise_pdf(s: Any) -> np.ndarray:
    """(π s/2) e^{−π s²/4}, unit mean (β = 1)."""
    s = np.asarray(s, float)
    return 0.5 * math.pi * s * np.exp(-0.25 * math.pi * s**2)


def wigner_surmise_cdf(s: Any) -> np.ndarray:
    """1 − e^{−π s²/4}."""
    s = np.asarray(s, float)
    return -np.expm1(-0.25 * math.pi * np.clip(s, 0, None) ** 2)


def ratio_statistic(values: Any) -> np.ndarray:
    """r_i = min(δ_i, δ_{i+1}) / max(δ_i, δ_{i+1}) of consecutive gaps δ of the sorted values."""
    gaps = np.diff(np.sort(as_array(values).ravel()))
    a, b = gaps[:-1], gaps[1:]
    big = np.maximum(a, b)
    return np.minimum(a, b)[big > 0] / big[big > 0]


def unfolded_spacings(values: Any, cdf: Any = None, degree: int = 5, trim: float = 0.1) -> np.ndarray:
    """Nearest-neighbour spacings after unfolding, normalised to unit mean.

    ``cdf``: the smooth CDF of the values (e.g. a Marchenko–Pastur CDF); without it the staircase is fitted by
    a polynomial of ``degree`` in the values. ``trim``: fraction of levels dropped at each edge. ``values``
    may be 2-D (runs × levels): each row is unfolded separately (with the same ``cdf``) and the spacings
    pooled.
    """
    arr = as_array(values)
    rows = arr.reshape(-1, arr.shape[-1]) if arr.ndim > 1 else arr[None]
    out = []
    for row in rows:
        x = np.sort(row)
        n = x.size
        if cdf is not None:
            xi = n * np.asarray(cdf(x), float)
        else:
            scale = x[-1] - x[0]
            z = (x - x[0]) / (scale if scale > 0 else 1.0)
            xi = np.polynomial.polynomial.polyval(
                z, np.polynomial.polynomial.polyfit(z, np.arange(n) + 0.5, degree)
            )
        cut = int(round(trim * n))
        xi = xi[cut : n - cut] if cut > 0 else xi
        out.append(np.diff(xi))
    s = np.concatenate(out)
    if s.size == 0:
        raise ValueError("spacings: too few levels left after trimming")
    return s / s.mean()


@dataclass(frozen=True)
class SpacingFit:
    """Unit-mean spacings against the Wigner surmise and Poisson, and the mean gap ratio ⟨r⟩."""

    n: int
    mean_ratio: float
    ks_wigner: float
    p_wigner: float
    ks_poisson: float
    p_poisson: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def spacing_fit(values: Any, cdf: Any = None, degree: int = 5, trim: float = 0.1) -> SpacingFit:
    """KS distances of the unfolded spacings to the Wigner surmise and to Poisson, plus ⟨r⟩ (pooled over rows
    when ``values`` is 2-D)."""
    arr = as_array(values)
    s = unfolded_spacings(arr, cdf=cdf, degree=degree, trim=trim)
    rows = arr.reshape(-1, arr.shape[-1]) if arr.ndim > 1 else arr[None]
    r = np.concatenate([ratio_statistic(row) for row in rows])
    kw = stats.kstest(s, wigner_surmise_cdf)
    kp = stats.kstest(s, stats.expon.cdf)
    return SpacingFit(
        int(s.size),
        float(r.mean()),
        float(kw.statistic),
        float(kw.pvalue),
        float(kp.statistic),
        float(kp.pvalue),
    )


# ------------------------------------------------------------------------------------------------------------
# One matrix, everything
# ------------------------------------------------------------------------------------------------------------


def analyse_matrix(
    path_or_array: Any, *, normalize: bool = True, n_boot: int = 100, seed: int = 0
) -> dict[str, Any]:
    """All fits on one weight matrix (a path to ``.npy``, a NumPy/JAX array or a CPU tensor).

    Returns a JSON-friendly dict: ``shape``, ``q`` = N/M, the singular values' ``sv_max``, ``sv_min``, the
    Marchenko–Pastur edge ``mp_edge`` = 1 + √q of the normalised spectrum and the number of singular values
    above it (``n_above_edge``; only meaningful with ``normalize``), and the fits of λ = s²: ``tail``
    (:func:`tail_fit`), ``gamma`` (:func:`gamma_fit`, with ``shape_vs_2507`` = k̂ − (M − N + 3)/4 and
    ``shape_vs_1d`` = k̂ − (M − N + 1)/2 in units of se), and ``spacing`` (:func:`spacing_fit` on λ). A fit
    that the matrix is too small for is reported as ``{"error": reason}``.
    """
    w = as_matrix(path_or_array)
    m, n = w.shape
    big, small = max(m, n), min(m, n)
    sv = matrix_singular_values(w, normalize=normalize)
    lam = sv**2
    q = small / big
    edge = 1.0 + math.sqrt(q)
    out: dict[str, Any] = {
        "shape": [int(m), int(n)],
        "q": q,
        "normalized": bool(normalize),
        "sv_max": float(sv.max()),
        "sv_min": float(sv.min()),
        "mp_edge": edge,
        "n_above_edge": int(np.sum(sv > edge)),
    }
    try:
        out["tail"] = tail_fit(lam, n_boot=n_boot, seed=seed).as_dict()
    except ValueError as e:
        out["tail"] = {"error": str(e)}
    try:
        g = gamma_fit(lam)
        out["gamma"] = {
            **g.as_dict(),
            "shape_vs_2507": (g.shape - 0.25 * (big - small + 3)) / g.shape_err,
            "shape_vs_1d": (g.shape - 0.5 * (big - small + 1)) / g.shape_err,
        }
    except ValueError as e:
        out["gamma"] = {"error": str(e)}
    try:
        out["spacing"] = spacing_fit(lam).as_dict()
    except ValueError as e:
        out["spacing"] = {"error": str(e)}
    return out
