r"""Outliers of the stability kernel K̃(t): the eigen-equation as one more, static, step of the level-1 DMFT
(edge_of_stability.md §4, §6).

The star row x ∈ R^{(4L+4)t} (blocks r_R, r_V, r_A^0..r_A^{L−1}, r_B^1..r_B^L, c_Δ, c_β, c_q, c_g^1..c_g^L,
c_e^1..c_e^{L−1}, each a vector over the training time s < t) solves the homogeneous linear system x = 𝔄(λ)x of
§4.4. 𝔄 depends on λ only through the bulk scalars (m, p_ℓ, A*_ℓ) of :mod:`._kernel_bulk`, so the level-1
products it needs are formed once per step (:func:`step_operators`) and 𝔄 is assembled from them by scalar
multiples at every λ. Outliers are the λ above the bulk edge with det(I − 𝔄(λ)) = 0.

Two independent transcriptions of §4.4 are kept: :func:`star_map` (the map on a vector, the reference) and
:func:`star_matrix` (blockwise assembly, used by the root scan); the tests check that 𝔄 from applying
:func:`star_map` to unit vectors equals :func:`star_matrix`.

Fresh inputs (§6): the star step uses an independent data matrix, so r_R = r_V = c_Δ = c_β = 0.

Each step t works on a b×b leading block of the level-1 arrays (b ≥ t, a power of two), masked to [0, t): the
masked rows and columns of 𝔄 are zero, so they contribute a factor 1 to the determinant.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from solvers.linalg import slogdet
from solvers.roots import chandrupatla, sign_change_brackets

from ._kernel_bulk import BulkScalars, bulk_edge, bulk_scalars

__all__ = [
    "Level1",
    "level1_from_solution",
    "block_names",
    "step_operators",
    "star_map",
    "star_terms",
    "star_layout",
    "star_matrix",
    "star_matrix_from_map",
    "StepSpectrum",
    "step_spectrum",
]


class Level1(NamedTuple):
    """The level-1 objects the star step needs, on the full T×T horizon (layer-indexed lists are 1-based:
    slot 0 unused). Equal-site covariances C_qβ̃ and C_ge^ℓ are formed from the level-1 maps."""

    H: Array
    J: Array
    Jp: Array
    HJ: Array
    R: Array
    C_delta: Array
    C_beta: Array
    C_q: Array
    C_qb: Array  # ⟨q̂ β̃ᵀ⟩
    M: tuple  # 𝕄_ℓ
    F: tuple  # 𝔽_ℓ
    P: tuple
    Q: tuple
    C_g: tuple
    C_e: tuple
    C_ge: tuple  # ⟨g^ℓ e^ℓᵀ⟩


def _get(sol: Any, *names: str) -> Any:
    """A level-1 field by any of its names, from a dict or a NamedTuple (the level-1 state is being retyped)."""
    for n in names:
        if isinstance(sol, Mapping) and n in sol:
            return sol[n]
        if not isinstance(sol, Mapping) and hasattr(sol, n):
            return getattr(sol, n)
    raise KeyError(f"level-1 solution has none of {names}")


def _layered(x: Any, depth: int) -> tuple:
    """Per-layer arrays as a tuple indexed ℓ = 0..L (slot 0 as given, possibly unused)."""
    if isinstance(x, tuple | list):
        return tuple(x)
    return tuple(x[ell] for ell in range(depth + 1))


def level1_from_solution(sol: Any, p: Any, depth: int) -> Level1:
    """Collect the level-1 objects from :func:`dmft.families.deep_linear.theory.solve`'s output.

    C_qβ̃ and C_ge^ℓ follow from the linear maps of deep_linear.md §5:
    q̂ = J′ρ/α − HJr⁰/(γ0ν) + HJ𝟙β*, β̃ = J[r⁰/(γ0ν) + P_0ρ/α − β*𝟙]  and  g = 𝕄(r + Qu), e = 𝔽(u + Pr).
    """
    H, J, R = _get(sol, "H"), _get(sol, "J"), _get(sol, "R")
    P0 = _get(sol, "P0", "PD")
    T = H.shape[-1]
    eye = jnp.eye(T)
    HJ = H @ J
    Jp = eye - HJ @ P0
    CD, Cb, Cq = _get(sol, "CD", "C_delta"), _get(sol, "Cb", "C_beta"), _get(sol, "Cq", "C_q")
    Cg = _layered(_get(sol, "Cg", "C_g"), depth)
    Ce = _layered(_get(sol, "Ce", "C_e"), depth)
    MM = _layered(_get(sol, "MM", "M"), depth)
    FF = _layered(_get(sol, "FF", "F"), depth)
    PP = _layered(_get(sol, "P"), depth)
    QQ = _layered(_get(sol, "Q"), depth)
    s2, g0, nu = p.sigma**2, p.gamma0, p.width_ratio
    ones = jnp.ones(T)
    init = s2 / (g0**2 * nu)
    C_qb = (Jp @ CD @ P0.T @ J.T / p.alpha - init * HJ @ Cg[1] @ J.T
            - p.teacher_variance * jnp.outer(HJ @ ones, J @ ones))
    C_ge = [None]
    for ell in range(1, depth + 1):
        c_in = Cq if ell == 1 else Ce[ell - 1]
        sig_r = p.sigma_readout**2 * jnp.outer(ones, ones) if ell == depth else s2 * Cg[ell + 1]
        C_ge.append(MM[ell] @ (sig_r @ PP[ell].T + s2 * QQ[ell] @ c_in) @ FF[ell].T)
    none = (None,)
    return Level1(H, J, Jp, HJ, R, CD, Cb, Cq, C_qb,
                  none + MM[1:], none + FF[1:], none + PP[1:], none + QQ[1:], none + Cg[1:], none + Ce[1:],
                  tuple(C_ge))


# ------------------------------------------------------------------------------------------------------------
# Block layout of the star row
# ------------------------------------------------------------------------------------------------------------


def block_names(depth: int) -> list[str]:
    """Names of the 4L+4 blocks of the star row, in order."""
    L = depth
    return (["rR", "rV"] + [f"rA{ell}" for ell in range(L)] + [f"rB{ell}" for ell in range(1, L + 1)]
            + ["cD", "cb", "cq"] + [f"cg{ell}" for ell in range(1, L + 1)] + [f"ce{ell}" for ell in range(1, L)])


#: blocks that couple the eigenvector to the training data matrix; zero for fresh inputs (§6)
DATA_BLOCKS = ("rR", "rV", "cD", "cb")


def step_operators(l1: Level1, b: int, t: Array, depth: int) -> dict[str, Any]:
    """The λ-independent matrices of 𝔄 at step t, on the leading b×b block masked to [0, t)."""
    mask = (jnp.arange(b) < t).astype(jnp.float64)
    mm = jnp.outer(mask, mask)

    def blk(x: Array) -> Array:
        return x[:b, :b] * mm

    ops: dict[str, Any] = {"mask": mask}
    for name in ("H", "J", "Jp", "HJ", "R", "C_delta", "C_beta", "C_q", "C_qb"):
        ops[name] = blk(getattr(l1, name))
    for ell in range(1, depth + 1):
        M, F, P, Q = (blk(getattr(l1, n)[ell]) for n in ("M", "F", "P", "Q"))
        ops[f"M{ell}"], ops[f"F{ell}"] = M, F
        ops[f"MQ{ell}"], ops[f"PM{ell}"] = M @ Q, P @ M
        ops[f"Cg{ell}"], ops[f"Ce{ell}"], ops[f"Cge{ell}"] = (blk(getattr(l1, n)[ell]) for n in ("C_g", "C_e", "C_ge"))
    return ops


class _Consts(NamedTuple):
    eg: Array  # ηγ0
    s2: Array  # σ²
    nu: Array
    alpha: Array
    gamma0: Array


def _consts(p: Any) -> _Consts:
    return _Consts(p.lr * p.gamma0, p.sigma**2, p.width_ratio, p.alpha, p.gamma0)


# ------------------------------------------------------------------------------------------------------------
# §4.4, transcription 1: the map on a vector (reference)
# ------------------------------------------------------------------------------------------------------------


def star_map(x: Float[Array, "nb b"], ops: Mapping[str, Array], bs: BulkScalars, c: _Consts, depth: int,
             fresh: bool = False) -> Float[Array, "nb b"]:
    """One application of the star-row map x ↦ 𝔄(λ)x (edge_of_stability.md §4.4), x stacked by blocks."""
    L = depth
    names = block_names(L)
    X = dict(zip(names, x, strict=True))
    if fresh:
        X.update({n: jnp.zeros_like(x[0]) for n in DATA_BLOCKS})
    m, p, a_st = bs.m, bs.p, bs.a_star
    s2, nu, alpha, eg, g0 = c.s2, c.nu, c.alpha, c.eg, c.gamma0
    o = ops
    d0 = 1 - m * p[0]
    w = X["rB1"] / nu + eg * X["cg1"]
    k = s2 / (g0 * nu)
    out: dict[str, Array] = {}
    # P-site
    out["rV"] = -(m / alpha) * (o["H"].T @ X["rR"])
    out["cD"] = (m / alpha) * (o["C_delta"] @ X["rR"] - o["H"] @ X["cb"])
    # D-site
    out["rR"] = (p[0] / d0) * (alpha * o["R"].T @ X["rV"] + (m / alpha) * o["Jp"].T @ w) + o["Jp"].T @ w / alpha
    out["rA0"] = (s2 / (g0 * nu * d0)) * (alpha * o["J"].T @ X["rV"] - m * o["HJ"].T @ w)
    out["cq"] = (o["Jp"] @ X["cD"] + alpha * o["C_qb"] @ X["rV"]
                 + m * (-k * o["HJ"] @ X["cg1"] + o["C_q"] @ w)) / d0
    a_beta = (alpha * o["R"] @ X["cD"] + alpha * o["C_beta"] @ X["rV"]
              + m * (k * o["J"] @ X["cg1"] + o["C_qb"].T @ w)) / d0
    out["cb"] = p[0] * a_beta + k * o["J"] @ X["cg1"] + o["C_qb"].T @ w
    # N-sites
    phi = [X["cq"]] + [X[f"ce{ell}"] for ell in range(1, L)]
    for ell in range(1, L + 1):
        c_ell = nu if ell == 1 else 1.0
        f = X[f"rA{ell - 1}"] + eg * phi[ell - 1]
        a = a_st[ell - 1]
        d = 1 - a * p[ell]
        M, F, MQ, PM = o[f"M{ell}"], o[f"F{ell}"], o[f"MQ{ell}"], o[f"PM{ell}"]
        Cgg, Cee, Cge = o[f"Cg{ell}"], o[f"Ce{ell}"], o[f"Cge{ell}"]
        if ell < L:
            h = X[f"rB{ell + 1}"] + eg * X[f"cg{ell + 1}"]
            cg_up = X[f"cg{ell + 1}"]
            out[f"rB{ell}"] = s2 * c_ell * ((p[ell] / d) * (MQ.T @ f + a * F.T @ h) + F.T @ h)
            out[f"rA{ell}"] = (s2 / d) * (M.T @ f + a * PM.T @ h)
            eg_ = (s2 * MQ @ phi[ell - 1] + Cgg @ f + a * (s2 * M @ cg_up + Cge @ h)) / d
            out[f"ce{ell}"] = (s2 * F @ phi[ell - 1] + Cge.T @ f + a * (s2 * PM @ cg_up + Cee @ h)) / d
            out[f"cg{ell}"] = p[ell] * eg_ + s2 * M @ cg_up + Cge @ h
        else:
            out[f"rB{ell}"] = s2 * c_ell * (MQ.T @ f) / d
            out[f"cg{ell}"] = (s2 * MQ @ phi[ell - 1] + Cgg @ f) / d
    if fresh:
        out.update({n: jnp.zeros_like(x[0]) for n in DATA_BLOCKS})
    mask = o["mask"]
    return jnp.stack([out[n] * mask for n in names])


def star_matrix_from_map(ops: Mapping[str, Array], bs: BulkScalars, c: _Consts, depth: int,
                         fresh: bool = False) -> Float[Array, "n n"]:
    """𝔄 by applying :func:`star_map` to the unit vectors (reference; O(n) map applications)."""
    nb, b = len(block_names(depth)), ops["mask"].shape[0]
    n = nb * b
    cols = jax.vmap(lambda e: star_map(e.reshape(nb, b), ops, bs, c, depth, fresh).reshape(n))(jnp.eye(n))
    return cols.T


# ------------------------------------------------------------------------------------------------------------
# §4.4, transcription 2: blockwise assembly
# ------------------------------------------------------------------------------------------------------------


def star_terms(bs: BulkScalars, c: _Consts, depth: int, fresh: bool = False) -> list[tuple[str, str, str, Array]]:
    """The blocks of 𝔄(λ) as terms (row block, column block, matrix key, scalar): block (i, j) is the sum of
    scalar × matrix over its terms. Matrix keys name entries of :func:`step_operators` (suffix ``.T``:
    transposed; ``I``: the masked identity). The list's structure does not depend on λ."""
    L = depth
    m, p, a_st = bs.m, bs.p, bs.a_star
    s2, nu, alpha, eg, g0 = c.s2, c.nu, c.alpha, c.eg, c.gamma0
    d0 = 1 - m * p[0]
    k = s2 / (g0 * nu)
    terms: list[tuple[str, str, str, Array]] = []

    def add(row: str, col: str, mat: str, scal: Any) -> None:
        terms.append((row, col, mat, scal))

    def add_w(row: str, mat: str, scal: Any) -> None:  # scal·mat @ w, w = r_B^1/ν + ηγ0 c_g^1
        add(row, "rB1", mat, scal / nu)
        add(row, "cg1", mat, scal * eg)

    # P-site
    add("rV", "rR", "H.T", -(m / alpha))
    add("cD", "rR", "C_delta", m / alpha)
    add("cD", "cb", "H", -(m / alpha))
    # D-site
    add("rR", "rV", "R.T", (p[0] / d0) * alpha)
    add_w("rR", "Jp.T", (p[0] / d0) * (m / alpha) + 1 / alpha)
    add("rA0", "rV", "J.T", (s2 / (g0 * nu * d0)) * alpha)
    add_w("rA0", "HJ.T", -(s2 / (g0 * nu * d0)) * m)
    add("cq", "cD", "Jp", 1 / d0)
    add("cq", "rV", "C_qb", alpha / d0)
    add("cq", "cg1", "HJ", -(m * k / d0))
    add_w("cq", "C_q", m / d0)
    # c_β = p_0⟨aβ̃⟩ + kJc_g^1 + C_β̃q w
    add("cb", "cD", "R", (p[0] / d0) * alpha)
    add("cb", "rV", "C_beta", (p[0] / d0) * alpha)
    add("cb", "cg1", "J", (p[0] / d0) * m * k + k)
    add_w("cb", "C_qb.T", (p[0] / d0) * m + 1)
    # N-sites
    phi = ["cq"] + [f"ce{ell}" for ell in range(1, L)]
    for ell in range(1, L + 1):
        c_ell = nu if ell == 1 else 1.0
        a = a_st[ell - 1]
        d = 1 - a * p[ell]
        f_cols = ((f"rA{ell - 1}", 1.0), (phi[ell - 1], eg))  # f = r_A^{ℓ−1} + ηγ0Φ_{ℓ−1}
        if ell < L:
            h_cols = ((f"rB{ell + 1}", 1.0), (f"cg{ell + 1}", eg))  # h = r_B^{ℓ+1} + ηγ0c_g^{ℓ+1}
            for col, sc in f_cols:
                add(f"rB{ell}", col, f"MQ{ell}.T", sc * s2 * c_ell * (p[ell] / d))
                add(f"rA{ell}", col, f"M{ell}.T", sc * (s2 / d))
                add(f"ce{ell}", col, f"Cge{ell}.T", sc / d)
                add(f"cg{ell}", col, f"Cg{ell}", sc * (p[ell] / d))
            for col, sc in h_cols:
                add(f"rB{ell}", col, f"F{ell}.T", sc * s2 * c_ell * ((p[ell] / d) * a + 1))
                add(f"rA{ell}", col, f"PM{ell}.T", sc * (s2 / d) * a)
                add(f"ce{ell}", col, f"Ce{ell}", sc * (a / d))
                add(f"cg{ell}", col, f"Cge{ell}", sc * ((p[ell] / d) * a + 1))
            add(f"ce{ell}", phi[ell - 1], f"F{ell}", s2 / d)
            add(f"ce{ell}", f"cg{ell + 1}", f"PM{ell}", (a / d) * s2)
            add(f"cg{ell}", phi[ell - 1], f"MQ{ell}", (p[ell] / d) * s2)
            add(f"cg{ell}", f"cg{ell + 1}", f"M{ell}", ((p[ell] / d) * a + 1) * s2)
        else:
            for col, sc in f_cols:
                add(f"rB{ell}", col, f"MQ{ell}.T", sc * s2 * c_ell / d)
                add(f"cg{ell}", col, f"Cg{ell}", sc / d)
            add(f"cg{ell}", phi[ell - 1], f"MQ{ell}", s2 / d)
    if fresh:
        terms = [tm for tm in terms if tm[0] not in DATA_BLOCKS and tm[1] not in DATA_BLOCKS]
    return terms


def _resolve(ops: Mapping[str, Array], key: str) -> Array:
    if key == "I":
        return jnp.diag(ops["mask"])
    return ops[key[:-2]].T if key.endswith(".T") else ops[key]


class StarLayout(NamedTuple):
    """λ-independent part of the blockwise 𝔄: stacked matrices and, per term, its block and matrix index."""

    mats: Float[Array, "n_mats b b"]
    rows: tuple
    cols: tuple
    mat_index: tuple
    n_blocks: int


def star_layout(ops: Mapping[str, Array], c: _Consts, depth: int, fresh: bool = False) -> StarLayout:
    """Stack the matrices the terms of :func:`star_terms` use (once per step; the structure is static)."""
    names = block_names(depth)
    idx = {n: i for i, n in enumerate(names)}
    dummy = BulkScalars(*(jnp.ones(s) for s in ((), (), (depth + 1,), (depth,), (depth,), ())))
    terms = star_terms(dummy, c, depth, fresh)
    keys = list(dict.fromkeys(tm[2] for tm in terms))
    mask = ops["mask"]
    mats = jnp.stack([_resolve(ops, k_) * jnp.outer(mask, mask) for k_ in keys])
    return StarLayout(mats, tuple(idx[tm[0]] for tm in terms), tuple(idx[tm[1]] for tm in terms),
                      tuple(keys.index(tm[2]) for tm in terms), len(names))


def star_matrix(layout: StarLayout, bs: BulkScalars, c: _Consts, depth: int,
                fresh: bool = False) -> Float[Array, "n n"]:
    """𝔄(λ) assembled block by block from :func:`star_terms`: a gather, a scale and one scatter-add."""
    terms = star_terms(bs, c, depth, fresh)
    scal = jnp.stack([jnp.asarray(tm[3], dtype=jnp.float64) for tm in terms])
    nb, b = layout.n_blocks, layout.mats.shape[-1]
    blocks = scal[:, None, None] * layout.mats[np.asarray(layout.mat_index)]
    grid = jnp.zeros((nb, nb, b, b)).at[np.asarray(layout.rows), np.asarray(layout.cols)].add(blocks)
    return grid.transpose(0, 2, 1, 3).reshape(nb * b, nb * b)


# ------------------------------------------------------------------------------------------------------------
# Root scan at one step
# ------------------------------------------------------------------------------------------------------------


class StepSpectrum(NamedTuple):
    """Top of the spectrum of K̃(t) at one step (outliers NaN-padded, largest first)."""

    edge: Float[Array, ""]
    outliers: Float[Array, " k"]
    n_outliers: Array
    logdet_min: Float[Array, ""]  # smallest log|det(I − 𝔄)| on the scan grid (a double root shows as ≪ 0)
    converged: Array


def _logdet(A: Array, layout: StarLayout, kappa: Array, p: Any, c: _Consts, depth: int,
            fresh: bool) -> tuple[Array, Array]:
    bs = bulk_scalars(A, kappa, p.sigma, p.width_ratio, p.alpha)
    mat = star_matrix(layout, bs, c, depth, fresh)
    sign, logabs = slogdet(jnp.eye(mat.shape[0]) - mat)
    return sign, logabs


def step_spectrum(l1: Level1, p: Any, depth: int, b: int, t: Array, kappa: Array, fresh: bool = False,
                  k_max: int = 2, n_grid: int = 48) -> StepSpectrum:
    """Bulk edge and outliers of K̃(t) (training inputs, or fresh inputs) at one step t ≤ b (§5).

    1. Bulk edge A_e, λ_e (first minimum of λ(A)).
    2. A_lo: halve from A_e/2 until det(I − 𝔄) > 0 and |log det| < 0.02 (det → 1 as λ → ∞).
    3. Sign scan of det on n_grid points uniform in A ∈ [A_lo, A_e(1 − 10⁻⁴)] (λ − λ_e ∝ (A_e − A)² near the
       edge, so this is the note's u² grid in λ), each sign change refined by Chandrupatla's method in A.
    """
    c = _consts(p)
    layout = star_layout(step_operators(l1, b, t, depth), c, depth, fresh)
    lam_e, a_e = bulk_edge(kappa, p.sigma, p.width_ratio, p.alpha)

    def logdet(A: Array) -> tuple[Array, Array]:
        return _logdet(A, layout, kappa, p, c, depth, fresh)

    def f(A: Array) -> Array:
        sign, la = logdet(A)
        return sign * jnp.exp(jnp.clip(la, -700.0, 700.0))

    def far(A: Array) -> Array:
        sign, la = logdet(A)
        return (sign > 0) & (jnp.abs(la) < 0.02)

    a_lo = jax.lax.while_loop(lambda s: (~far(s[0])) & (s[1] < 60), lambda s: (s[0] / 2, s[1] + 1),
                              (a_e / 2, 0))[0]
    u = jnp.linspace(0.0, 1.0, n_grid)
    A_grid = a_lo + (a_e * (1 - 1e-4) - a_lo) * u  # increasing A = decreasing λ
    sign, la = jax.vmap(logdet)(A_grid)
    fx = sign * jnp.exp(jnp.clip(la, -700.0, 700.0))
    # largest λ = smallest A first: scan in y = −A (increasing), brackets with the largest y first
    lo_r, hi_r, valid_r = sign_change_brackets(-A_grid[::-1], fx[::-1], k_max)
    roots = jax.vmap(lambda a, b_: chandrupatla(lambda y: f(-y), a, b_, rtol=1e-13))(lo_r, hi_r)
    A_root = -roots.x
    lam = jax.vmap(lambda A: bulk_scalars(A, kappa, p.sigma, p.width_ratio, p.alpha).lam)(A_root)
    lam = jnp.where(valid_r, lam, jnp.nan)
    ok = jnp.all(jnp.where(valid_r, roots.converged, True)) & far(a_lo)
    return StepSpectrum(lam_e, lam, jnp.sum(valid_r), jnp.min(la), ok)
