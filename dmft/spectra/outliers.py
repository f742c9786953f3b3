"""Outlier singular values of a Gaussian matrix plus bulk-dependent spikes (spectra.md §3–§8).

The trained n×m matrix is X = X0 + G C Φᵀ (X0 iid, entry variance σ²/m, q = n/m), with spikes G (n×k_L) and
Φ (m×k_R) that may depend on X0 through the products Y = X0Φ and Z = X0ᵀG. Everything is driven by the six
Grams GᵀG, GᵀY, YᵀY, ΦᵀΦ, ΦᵀZ, ZᵀZ (one common normalisation, §5) and C.

**Reduced basis (§7.3).** With GᵀG = Q Λ Qᵀ, the directions with λ > ``threshold``·λ_max are kept and
T_G = Q_kept Λ_kept^{-1/2} maps G to an orthonormal basis Ĝ = G T_G (likewise T_Φ). In that basis GᵀG = P_G,
ΦᵀΦ = P_Φ (0/1 diagonal masks), GᵀY → T_Gᵀ GᵀY T_Φ, C → B_G C B_Φᵀ with B = Λ_kept^{1/2} Q_keptᵀ, and dropped
directions become zero rows and columns, which leave the determinant unchanged (an identity row). Then

    Core = [[GᵀY + C, P_G], [P_Φ, 0]],   Y⊥ᵀY⊥ = YᵀY − (GᵀY)ᵀ GᵀY,   Z⊥ᵀZ⊥ = ZᵀZ − (ΦᵀZ)ᵀ ΦᵀZ,
    ℒ(s) = blockdiag(a P_G, b Y⊥ᵀY⊥),   ℛ(s) = blockdiag(a P_Φ, c Z⊥ᵀZ⊥),
    a = 1/s,  b = s m₁(s²),  c = s m₂(s²),

and the outliers are the roots s > edge = σ(1 + √q) of det(I − Core ℛ Coreᵀ ℒ) = 0 (§4).

**Monotone form (used by the solver).** ℒ and ℛ are PSD above the edge, so by Sylvester's identity
det(I − Core ℛ Coreᵀ ℒ) = det(I − S Sᵀ) = Πᵢ (1 − σᵢ(S)²) with

    S(s) = ℒ^{1/2} Core ℛ^{1/2} = diag(√a, √b) · K · diag(√a, √c),   K = blockdiag(P_G, (Y⊥ᵀY⊥)^{1/2}) Core
                                                                         · blockdiag(P_Φ, (Z⊥ᵀZ⊥)^{1/2}).

K does not depend on s, and a, b, c all decrease with s, so S(s′) = E_L S(s) E_R with contractions E_L, E_R for
s′ > s and every ordered singular value σ_j(S(s)) is non-increasing in s. Hence the j-th largest outlier is the
unique root of σ_j(S(s)) = 1 on (edge, ∞), it exists iff σ_j(S(edge⁺)) > 1, and roots of even multiplicity
(degenerate outliers, which a sign scan of the determinant misses) are found like any other. Each root is found by
Chandrupatla's bracketing method, or (``_ROOT = "newton"``) by Newton's method in x = √(s − edge) with the analytic
derivative dσ_j/ds = σ_j(uⱼ²·d log D_L + vⱼ²·d log D_R) from one SVD per iterate, safeguarded by bisection.

**Rank reduction.** Consecutive spike vectors are nearly collinear: GᵀG and ΦᵀΦ keep r ≪ k directions (r ≈ 10–16
for deep-linear layers at t = 200). :func:`outliers_over_time` measures r first and solves every step on the
(2r′)×(2r′) reduced problem, r′ = r + slack padded to a multiple of 16 — exact, since the dropped directions are zero
rows and columns — instead of (kl + kr)²: 7–27× faster at T = 100–200. Because a, b, c ≤
s/(s² − edge²), ‖S(s)‖ < 1 for s > s_hi := (‖K‖ + √(‖K‖² + 4 edge²))/2: every root lies in (edge, s_hi], so no
growing of s_max is needed. :func:`scan_determinant_roots` is the independent grid scan of the determinant's
sign plus local minima of |det| (§7.1, §7.4), kept as a cross-check.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

import dmft._jax  # noqa: F401  (refuses known-bad JAX versions)
from solvers.linalg import eigh, eigvalsh, slogdet, svd, svdvals
from solvers.roots import chandrupatla, golden_section, local_minima, sign_change_brackets

from .bulk import bulk_edge, resolvent_m1, resolvent_m2

__all__ = [
    "Grams",
    "Outliers",
    "SpikeProblem",
    "reduce_spikes",
    "bulk_factors",
    "outlier_determinant",
    "outlier_singular_values",
    "outliers_over_time",
    "mask_leading_block",
    "scan_determinant_roots",
    "gram_consistency",
    "bbp_outliers",
    "naive_bbp_outliers",
]


class Grams(NamedTuple):
    """The six spike Grams of X = X0 + GCΦᵀ, with Y = X0Φ and Z = X0ᵀG (any one common normalisation, §5)."""

    GtG: Float[Array, "*batch kl kl"]
    GtY: Float[Array, "*batch kl kr"]
    YtY: Float[Array, "*batch kr kr"]
    PhitPhi: Float[Array, "*batch kr kr"]
    PhitZ: Float[Array, "*batch kr kl"]
    ZtZ: Float[Array, "*batch kl kl"]


class Outliers(NamedTuple):
    """Outlier singular values (descending, NaN-padded to k_max) and diagnostics.

    ``n_outliers`` counts every root above edge·(1 + edge_tol), also those beyond k_max. ``converged`` is False
    when an input is not finite or a root did not reach its tolerance. ``consistency`` is
    :func:`gram_consistency` of the Grams used.
    """

    sv: Float[Array, "*batch k_max"]
    edge: Float[Array, "*batch"]
    n_outliers: Int[Array, "*batch"]
    converged: Bool[Array, "*batch"]
    consistency: Float[Array, "*batch"]


class SpikeProblem(NamedTuple):
    """A spike problem in the reduced orthonormal basis (see the module docstring)."""

    core: Float[Array, "kl+kr kr+kl"]
    yperp: Float[Array, "kr kr"]  # Y⊥ᵀY⊥
    zperp: Float[Array, "kl kl"]  # Z⊥ᵀZ⊥
    keep_g: Float[Array, " kl"]  # diagonal of P_G (1 kept, 0 dropped)
    keep_phi: Float[Array, " kr"]
    kernel: Float[Array, "kl+kr kr+kl"]  # K
    finite: Bool[Array, ""]
    complete: Bool[Array, ""] = True  # False: more kept directions than the static ``rank`` of reduce_spikes


def _sym(a: Array) -> Array:
    return 0.5 * (a + a.T)


def _orthonormalizer(gram: Float[Array, "k k"], threshold: ArrayLike) -> tuple[Array, Array, Array]:
    """T = Q Λ^{-1/2} and B = Λ^{1/2} Qᵀ on the eigen-directions with λ > threshold·λ_max (zero elsewhere), mask."""
    lam, q = eigh(_sym(gram))
    cut = jnp.maximum(threshold * jnp.max(lam), jnp.finfo(lam.dtype).tiny)
    keep = lam > cut
    lam_safe = jnp.where(keep, lam, 1.0)
    t = q * jnp.where(keep, 1 / jnp.sqrt(lam_safe), 0.0)[None, :]
    b = (q * jnp.where(keep, jnp.sqrt(lam_safe), 0.0)[None, :]).T
    return t, b, keep.astype(lam.dtype)


def _psd_sqrt(a: Float[Array, "k k"]) -> Float[Array, "k k"]:
    """Symmetric square root with negative eigenvalues clipped (conventions.md §7)."""
    lam, q = eigh(_sym(a))
    return (q * jnp.sqrt(jnp.maximum(lam, 0.0))[None, :]) @ q.T


def reduce_spikes(
    grams: Grams, c: Float[Array, "kl kr"], threshold: ArrayLike = 1e-10, rank: int | None = None
) -> SpikeProblem:
    """Core, Y⊥ᵀY⊥, Z⊥ᵀZ⊥ and K in the eigen-thresholded orthonormal basis of span(G) and span(Φ) (§3, §7.3).

    ``rank`` (static): keep only the ``rank`` leading eigen-directions of GᵀG and of ΦᵀΦ, so that every later
    matrix is (2·rank)×(2·rank) instead of (kl + kr)². Exact when at most ``rank`` directions pass the threshold
    (the dropped ones are zero rows and columns); otherwise ``complete`` is False.
    """
    finite = jnp.all(jnp.array([jnp.all(jnp.isfinite(g)) for g in grams])) & jnp.all(jnp.isfinite(c))
    grams = Grams(*(jnp.where(finite, g, 0.0) for g in grams))
    c = jnp.where(finite, c, 0.0)
    tg, bg, keep_g = _orthonormalizer(grams.GtG, threshold)
    tf, bf, keep_f = _orthonormalizer(grams.PhitPhi, threshold)
    complete = jnp.asarray(True)
    if rank is not None:  # eigh sorts ascending: the kept directions are the last ones
        complete = (jnp.sum(keep_g) <= rank) & (jnp.sum(keep_f) <= rank)
        rg, rf = min(rank, keep_g.shape[0]), min(rank, keep_f.shape[0])
        tg, bg, keep_g = tg[:, -rg:], bg[-rg:], keep_g[-rg:]
        tf, bf, keep_f = tf[:, -rf:], bf[-rf:], keep_f[-rf:]
    gy = tg.T @ grams.GtY @ tf
    fz = tf.T @ grams.PhitZ @ tg
    yperp = _sym(tf.T @ grams.YtY @ tf - gy.T @ gy)
    zperp = _sym(tg.T @ grams.ZtZ @ tg - fz.T @ fz)
    cr = bg @ c @ bf.T
    kl, kr = keep_g.shape[0], keep_f.shape[0]
    core = jnp.block([[gy + cr, jnp.diag(keep_g)], [jnp.diag(keep_f), jnp.zeros((kr, kl))]])
    left = jax.scipy.linalg.block_diag(jnp.diag(keep_g), _psd_sqrt(yperp))
    right = jax.scipy.linalg.block_diag(jnp.diag(keep_f), _psd_sqrt(zperp))
    return SpikeProblem(core, yperp, zperp, keep_g, keep_f, left @ core @ right, finite, complete)


def bulk_factors(s: ArrayLike, q: ArrayLike, sigma: ArrayLike) -> tuple[Array, Array, Array]:
    """(a, b, c) = (1/s, s m₁(s²), s m₂(s²)): the action of s(s² − X_bX_bᵀ)⁻¹ and its right twin (§4)."""
    s = jnp.asarray(s, dtype=float)
    return 1 / s, s * resolvent_m1(s**2, q, sigma), s * resolvent_m2(s**2, q, sigma)


def _s_matrix(p: SpikeProblem, s: Array, q: ArrayLike, sigma: ArrayLike) -> Array:
    a, b, c = bulk_factors(s, q, sigma)
    kl, kr = p.keep_g.shape[0], p.keep_phi.shape[0]
    dl = jnp.concatenate([jnp.full(kl, jnp.sqrt(a)), jnp.full(kr, jnp.sqrt(b))])
    dr = jnp.concatenate([jnp.full(kr, jnp.sqrt(a)), jnp.full(kl, jnp.sqrt(c))])
    return dl[:, None] * p.kernel * dr[None, :]


def _slogdet(p: SpikeProblem, s: Array, q: ArrayLike, sigma: ArrayLike) -> tuple[Array, Array]:
    """sign and log|det(I − Core ℛ(s) Coreᵀ ℒ(s))| (§4), evaluated as written."""
    a, b, c = bulk_factors(s, q, sigma)
    ell = jax.scipy.linalg.block_diag(a * jnp.diag(p.keep_g), b * p.yperp)
    rr = jax.scipy.linalg.block_diag(a * jnp.diag(p.keep_phi), c * p.zperp)
    n = ell.shape[0]
    return slogdet(jnp.eye(n) - p.core @ rr @ p.core.T @ ell)


@jax.jit
def outlier_determinant(
    s: Float[ArrayLike, " n"],
    grams: Grams,
    c: Float[Array, "kl kr"],
    q: ArrayLike,
    sigma: ArrayLike,
    threshold: ArrayLike = 1e-10,
) -> tuple[Float[Array, " n"], Float[Array, " n"]]:
    """(sign, log|det|) of det(I − Core ℛ(s) Coreᵀ ℒ(s)) at each s > edge (§4)."""
    p = reduce_spikes(grams, c, threshold)
    return jax.vmap(lambda x: _slogdet(p, x, q, sigma))(jnp.atleast_1d(jnp.asarray(s, dtype=float)))


def _search_interval(p: SpikeProblem, q: ArrayLike, sigma: ArrayLike, edge_tol: ArrayLike) -> tuple[Array, Array]:
    edge = bulk_edge(q, sigma)
    s_lo = edge * (1 + edge_tol)
    knorm = svdvals(p.kernel)[0]
    s_hi = 1.1 * (knorm + jnp.sqrt(knorm**2 + 4 * edge**2)) / 2
    return s_lo, jnp.maximum(s_hi, 1.01 * s_lo)


@jax.jit
def gram_consistency(grams: Grams) -> Float[Array, ""]:
    """‖ΦᵀZ − (GᵀY)ᵀ‖_F / max(‖ΦᵀZ‖_F, ‖GᵀY‖_F): the free check of §5 (0 for exact Grams)."""
    diff = jnp.linalg.norm(grams.PhitZ - jnp.swapaxes(grams.GtY, -1, -2), axis=(-2, -1))
    scale = jnp.maximum(
        jnp.maximum(jnp.linalg.norm(grams.PhitZ, axis=(-2, -1)), jnp.linalg.norm(grams.GtY, axis=(-2, -1))),
        jnp.finfo(diff.dtype).tiny,
    )
    return diff / scale


def _floats(*xs: ArrayLike) -> tuple[Array, ...]:
    """Cast to float64 arrays, so that Python numbers and arrays share one compiled version."""
    return tuple(jnp.asarray(x, dtype=float) for x in xs)


def outlier_singular_values(
    grams: Grams,
    c: Float[ArrayLike, "kl kr"],
    q: ArrayLike,
    sigma: ArrayLike,
    *,
    k_max: int = 4,
    edge_tol: ArrayLike = 1e-3,
    threshold: ArrayLike = 1e-10,
) -> Outliers:
    """The k_max largest outlier singular values of X0 + GCΦᵀ from its Grams (§4), NaN where there are fewer.

    Arguments: the six Grams and C in one common normalisation (§5; any scalar rescaling G → aG, Φ → bΦ,
    C → C/(ab) gives the same roots), the aspect ratio q = n/m and the entry std σ of X0 (variance σ²/m).
    Roots within ``edge_tol`` (relative) of the edge σ(1 + √q) are not reported (§7.2); Gram directions with
    eigenvalue below ``threshold``·λ_max are dropped (§7.3). The j-th root solves σ_j(S(s)) = 1 (module
    docstring), refined by Chandrupatla's method to machine precision. Compiled once per shape and k_max;
    jit/vmap-able over every array argument.
    """
    return _outlier_sv(Grams(*_floats(*grams)), *_floats(c, q, sigma, edge_tol, threshold), k_max=k_max)


def _log_scalings(s: Array, q: ArrayLike, sigma: ArrayLike, kl: int, kr: int) -> tuple[Array, Array]:
    """d/ds of log D_L(s) and log D_R(s), where S(s) = D_L K D_R (:func:`_s_matrix`): the analytic derivatives of
    log √a, log √b, log √c (a = 1/s, b = s m₁(s²), c = s m₂(s²))."""
    (a, b, c), (da, db, dc) = jax.jvp(lambda x: bulk_factors(x, q, sigma), (s,), (jnp.ones_like(s),))
    la, lb, lc = da / (2 * a), db / (2 * b), dc / (2 * c)
    return (jnp.concatenate([jnp.full(kl, la), jnp.full(kr, lb)]),
            jnp.concatenate([jnp.full(kr, la), jnp.full(kl, lc)]))


def _singular_value_and_slope(
    p: SpikeProblem, s: Array, j: Array, q: ArrayLike, sigma: ArrayLike
) -> tuple[Array, Array]:
    """σ_j(S(s)) and its analytic derivative dσ_j/ds = σ_j (uⱼ²·d log D_L + vⱼ²·d log D_R) (from Sv = σu,
    uᵀS = σvᵀ and dS/ds = (d log D_L) S + S (d log D_R)); one SVD with vectors."""
    kl, kr = p.keep_g.shape[0], p.keep_phi.shape[0]
    u, sv, vt = svd(_s_matrix(p, s, q, sigma))
    dl, dr = _log_scalings(s, q, sigma, kl, kr)
    uj, vj = u[:, j], vt[j]
    return sv[j], sv[j] * (uj**2 @ dl + vj**2 @ dr)


class _Newton(NamedTuple):
    x: Array  # current iterate, x = √(s − edge)
    f: Array  # σ_j − 1 at x
    df: Array  # d(σ_j − 1)/dx at x
    lo: Array  # bracket: f(lo) > 0 ≥ f(hi)
    hi: Array
    it: Array
    done: Array


def _newton_root(
    p: SpikeProblem, j: Array, edge: Array, x_lo: Array, x_hi: Array, q: ArrayLike, sigma: ArrayLike,
    maxiter: int = 60,
) -> tuple[Array, Array]:
    """The root s > edge of σ_j(S(s)) = 1 by Newton's method in x = √(s − edge), safeguarded by the bracket
    [x_lo, x_hi] (bisection when a step leaves it). In x the square-root edge singularity of m₁, m₂ is smooth, so
    the iteration converges quadratically from the left end, where it starts (σ_j is non-increasing in s).
    Returns (s, converged)."""

    def evaluate(x: Array) -> tuple[Array, Array]:
        sv, slope = _singular_value_and_slope(p, edge + x * x, j, q, sigma)
        return sv - 1, slope * 2 * x

    def body(st: _Newton) -> _Newton:
        step = st.f / st.df
        x = st.x - step
        inside = jnp.isfinite(x) & (x > st.lo) & (x < st.hi)
        x = jnp.where(inside, x, 0.5 * (st.lo + st.hi))
        f, df = evaluate(x)
        lo = jnp.where(f > 0, x, st.lo)
        hi = jnp.where(f > 0, st.hi, x)
        eps = jnp.finfo(x.dtype).eps
        small = inside & (jnp.abs(step) <= 2 * eps * jnp.abs(x))
        done = small | (f == 0) | (hi - lo <= 4 * eps * hi)
        return _Newton(x, f, df, lo, hi, st.it + 1, done)

    f0, df0 = evaluate(x_lo)
    st = jax.lax.while_loop(lambda st: ~st.done & (st.it < maxiter), body,
                            _Newton(x_lo, f0, df0, x_lo, x_hi, jnp.asarray(0), f0 <= 0))
    ok = st.done & (f0 > 0) & jnp.isfinite(st.x)
    return edge + st.x * st.x, ok


@partial(jax.jit, static_argnames=("k_max", "rank"))
def _outlier_sv(
    grams: Grams, c: Array, q: Array, sigma: Array, edge_tol: Array, threshold: Array, *, k_max: int,
    rank: int | None = None,
) -> Outliers:
    p = reduce_spikes(grams, c, threshold, rank)
    s_lo, s_hi = _search_interval(p, q, sigma, edge_tol)
    edge = bulk_edge(q, sigma)
    top = svdvals(_s_matrix(p, s_lo, q, sigma))
    n_out = jnp.sum(top > 1)
    x_lo, x_hi = jnp.sqrt(s_lo - edge), jnp.sqrt(s_hi - edge)

    def root(j: Array) -> tuple[Array, Array]:
        has = j < n_out
        if _ROOT == "chandrupatla":  # the previous bracketing solver, kept for benchmarks
            def h(s: Array) -> Array:
                return svdvals(_s_matrix(p, s, q, sigma))[j] - 1

            r = chandrupatla(h, jnp.where(has, s_lo, s_hi), s_hi)
            return jnp.where(has, r.x, jnp.nan), r.converged | ~has
        # an absent root starts with an empty bracket and exits at once
        r, ok = _newton_root(p, j, edge, jnp.where(has, x_lo, x_hi), x_hi, q, sigma)
        return jnp.where(has, r, jnp.nan), ok | ~has

    js = jnp.arange(k_max)
    sv, ok = jax.lax.map(root, jnp.where(js < top.shape[0], js, top.shape[0] - 1))
    sv = jnp.where(js < top.shape[0], sv, jnp.nan)
    converged = p.finite & p.complete & jnp.all(ok)
    return Outliers(sv, bulk_edge(q, sigma), n_out, converged, gram_consistency(grams))


#: Root solver of :func:`outlier_singular_values`: "newton" (analytic derivative) or "chandrupatla" (bracketing).
#: Measured on the 2-core test machine (reduced problems, T = 200): Newton 1.9–2.8 s, Chandrupatla 1.5–2.2 s, so the
#: bracketing solver stays the default; Newton is kept (and tested) for larger reduced problems.
_ROOT = "chandrupatla"

#: Reduced problems are padded to a multiple of this many directions per side (one compile per multiple).
RANK_QUANTUM = 16


def padded_rank(rank: int, size: int) -> int:
    """The static reduced size for a numerical rank: a multiple of :data:`RANK_QUANTUM` above rank + 2 (slack for
    a direction at the threshold), at most ``size``. (16 rather than 32: the root search on 32×32 reduced
    problems took half the time of 64×64 ones at T = 100–200.)"""
    return min(size, RANK_QUANTUM * -(-(int(rank) + 3) // RANK_QUANTUM))


@jax.jit
def spike_ranks(grams: Grams, c: Array, steps: Array, threshold: Array) -> Array:
    """Numerical rank (eigenvalues above threshold·λ_max) of GᵀG and ΦᵀΦ for the leading block of each step,
    (n_steps, 2): cheap eigenvalue-only decompositions that size the reduced problems."""

    def one(t: Array) -> Array:
        g, _ = mask_leading_block(grams, c, t)

        def rank(gram: Array) -> Array:
            lam = eigvalsh(_sym(gram))
            return jnp.sum(lam > jnp.maximum(threshold * jnp.max(lam), jnp.finfo(lam.dtype).tiny))

        return jnp.stack([rank(g.GtG), rank(g.PhitPhi)])

    return jax.lax.map(one, steps)


def mask_leading_block(grams: Grams, c: Float[Array, "T T"], t: ArrayLike) -> tuple[Grams, Float[Array, "T T"]]:
    """Keep the [0, t)² leading block of every T×T Gram and of C, zero elsewhere.

    The zero rows and columns of GᵀG and ΦᵀΦ fall below any threshold, so the reduced problem (and its
    determinant) is exactly the one of the t×t blocks: the spikes s < t of the state after t steps (§6).
    """
    m = (jnp.arange(c.shape[-1]) < jnp.asarray(t, dtype=int)).astype(c.dtype)
    mm = m[:, None] * m[None, :]
    return Grams(*(g * mm for g in grams)), c * mm


def outliers_over_time(
    grams: Grams,
    c: Float[ArrayLike, "T T"],
    q: ArrayLike,
    sigma: ArrayLike,
    steps: Int[ArrayLike, " n_steps"] | None = None,
    *,
    k_max: int = 4,
    edge_tol: ArrayLike = 1e-3,
    threshold: ArrayLike = 1e-10,
    rank_reduce: bool = True,
) -> Outliers:
    """Outliers of the state after t steps, for each t in ``steps`` (default 0..T−1), from T×T level-1 Grams.

    ``rank_reduce``: the numerical ranks of GᵀG and ΦᵀΦ are measured first (:func:`spike_ranks`; consecutive
    spikes are nearly collinear, rank ~10–20 at t = 200 for deep-linear layers) and every root search runs on the
    (2r)×(2r) reduced problem, r = :func:`padded_rank` (exact: the dropped directions are zero rows and columns).
    Under a transformation (vmap/jit) the ranks are not concrete and the full problems are solved.

    The state after t steps carries the spikes s < t, whose Grams are the [0, t)² leading blocks (by causality
    equal to the horizon-t solution). Each block is embedded in the T×T arrays by :func:`mask_leading_block`
    and the steps are solved in one compiled loop (one compile per T, number of steps and k_max). Returns
    :class:`Outliers` with a leading axis over steps (``sv``: (n_steps, k_max)); ``consistency`` is that of
    each t×t block.
    """
    c = jnp.asarray(c, dtype=float)
    steps = jnp.arange(c.shape[-1]) if steps is None else jnp.asarray(steps, dtype=int)
    grams = Grams(*_floats(*grams))
    q, sigma, edge_tol, threshold = _floats(q, sigma, edge_tol, threshold)
    rank = None
    traced = any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves((grams, c, steps, threshold)))
    if rank_reduce and not traced:  # traced (vmap/jit): no data-dependent size, full problems
        r = int(np.max(np.asarray(spike_ranks(grams, c, steps, threshold)), initial=0))
        rank = padded_rank(r, max(c.shape))
    return _over_time(grams, c, steps, q, sigma, edge_tol, threshold, k_max=k_max, rank=rank)


@partial(jax.jit, static_argnames=("k_max", "rank"))
def _over_time(
    grams: Grams, c: Array, steps: Array, q: Array, sigma: Array, edge_tol: Array, threshold: Array, *, k_max: int,
    rank: int | None = None,
) -> Outliers:
    def one(t: Array) -> Outliers:
        g, ct = mask_leading_block(grams, c, t)
        return _outlier_sv(g, ct, q, sigma, edge_tol, threshold, k_max=k_max, rank=rank)

    return jax.lax.map(one, steps)  # sequential: each step's root search stops on its own


@partial(jax.jit, static_argnames=("k_max", "n_grid"))
def scan_determinant_roots(
    grams: Grams,
    c: Float[Array, "kl kr"],
    q: ArrayLike,
    sigma: ArrayLike,
    *,
    k_max: int = 4,
    n_grid: int = 2000,
    edge_tol: ArrayLike = 1e-3,
    threshold: ArrayLike = 1e-10,
    double_tol: ArrayLike = 1e-6,
) -> Float[Array, " k_max"]:
    """Outliers from the determinant alone (§7.1, §7.4): an independent check of :func:`outlier_singular_values`.

    The sign of det(I − Core ℛ Coreᵀ ℒ) is scanned on ``n_grid`` points geometric in s − edge on
    (edge·(1 + edge_tol), s_hi], each sign change is refined by Chandrupatla's method on sign·|det|^{1/n}
    (n = 2k, which keeps the function O(1)); each grid local minimum of |det| that is not a sign change is refined
    by golden-section search and counted as a double root when |det| there is below ``double_tol`` times its
    value at the neighbouring grid points. Returns the k_max largest roots (with multiplicity), NaN-padded.
    """
    p = reduce_spikes(grams, c, threshold)
    s_lo, s_hi = _search_interval(p, q, sigma, edge_tol)
    edge = bulk_edge(q, sigma)
    u = jnp.linspace(0.0, 1.0, n_grid)
    grid = edge + (s_lo - edge) * ((s_hi - edge) / (s_lo - edge)) ** u
    n = p.core.shape[0]

    def g(s: Array) -> Array:
        sign, logabs = _slogdet(p, s, q, sigma)
        return sign * jnp.exp(logabs / n)

    def logabs(s: Array) -> Array:
        return _slogdet(p, s, q, sigma)[1]

    vals = jax.vmap(g)(grid)
    lo, hi, valid = sign_change_brackets(grid, vals, k_max)
    simple = jax.vmap(lambda a, b: chandrupatla(g, a, b).x)(jnp.where(valid, lo, s_lo), jnp.where(valid, hi, s_hi))
    simple = jnp.where(valid, simple, jnp.nan)

    absv = jnp.abs(vals)
    i, vmin = local_minima(absv, k_max)
    not_change = (jnp.sign(vals[i - 1]) == jnp.sign(vals[i])) & (jnp.sign(vals[i + 1]) == jnp.sign(vals[i]))
    x_min, log_min = jax.vmap(lambda a, b: golden_section(logabs, a, b))(grid[i - 1], grid[i + 1])
    log_nb = jnp.maximum(jax.vmap(logabs)(grid[i - 1]), jax.vmap(logabs)(grid[i + 1]))
    is_double = vmin & not_change & (log_min < log_nb + jnp.log(double_tol))
    double = jnp.where(is_double, x_min, jnp.nan)

    roots = jnp.concatenate([simple, double, double])
    roots = -jnp.sort(-jnp.where(jnp.isnan(roots), -jnp.inf, roots))[:k_max]
    return jnp.where(jnp.isfinite(roots), roots, jnp.nan)


@jax.jit
def bbp_outliers(theta: ArrayLike, q: ArrayLike, sigma: ArrayLike) -> Float[Array, "*shape"]:
    """Classic BBP (§8): rank-one spike θuvᵀ with unit u, v independent of X0.

    s = σ√((1 + τ²)(q + τ²))/τ with τ = θ/σ, when τ > q^{1/4}; NaN otherwise (no outlier). Square: σ(τ + 1/τ).
    """
    theta, q, sigma = (jnp.asarray(x, dtype=float) for x in (theta, q, sigma))
    tau = theta / sigma
    above = tau > q**0.25
    tau = jnp.where(above, tau, 1.0)
    return jnp.where(above, sigma * jnp.sqrt((1 + tau**2) * (q + tau**2)) / tau, jnp.nan)


@partial(jax.jit, static_argnames=("k_max",))
def naive_bbp_outliers(
    grams: Grams, c: Float[Array, "kl kr"], q: ArrayLike, sigma: ArrayLike, *, k_max: int = 4
) -> Float[Array, " k_max"]:
    """BBP applied to the singular values θ_i of the spike GCΦᵀ alone, as if it were independent of X0.

    θ_i are the singular values of (GᵀG)^{1/2} C (ΦᵀΦ)^{1/2}. This ignores GᵀY, YᵀY, ZᵀZ, so it is wrong for
    spikes that depend on X0 (§8); it is the baseline that the conditioning theory corrects.
    """
    theta = svdvals(_psd_sqrt(grams.GtG) @ c @ _psd_sqrt(grams.PhitPhi))
    theta = jnp.concatenate([theta, jnp.zeros(max(k_max - theta.shape[0], 0))])[:k_max]
    return bbp_outliers(theta, q, sigma)
