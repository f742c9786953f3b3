r"""Frozen readout: the Dyson (variance-profile) equation of the first layer (extensive_outputs.md §5, §8).

With V frozen, M(t+1) = M(t) − (η/ν) S_V M(t) Σ̂ + aVᵀ(BΣ̂ + Ẽ), S_V = VᵀV. In the eigenbases of S_V (eigenvalues
s) and Σ̂ (eigenvalues λ) M(t) has independent Gaussian entries of variance v(s, λ)/D,

    v(s, λ) = σ²(1 − εsλ)^{2t} + a² s g_t(sλ)² (ρ*λ² + σ_ε²λ/α),   ε = η/ν,  a = ηγ0,
    g_t(x) = Σ_{r<t}(1 − εx)^r = (1 − (1 − εx)^t)/(εx)   (g_t(0) = t).

The diagonal resolvents g(s) of MMᵀ and g̃(λ) of MᵀM at z solve (Girko; Hachem–Loubaton–Najim)

    g(s) = −1/(z(1 + E_λ[v(s,λ) g̃(λ)])),     g̃(λ) = −1/(z(1 + ν E_s[v(s,λ) g(s)])),

and eig(MᵀM) (normalized over D) has density π⁻¹ Im E_λ g̃(x + i0); singular values have density 2σρ(σ²).
Population (λ ≡ 1): Silverstein's equation z(m) = −1/m + ν E_s[v/(1 + vm)], whose top edge is the critical
point x₊ = z(m*), z'(m*) = 0 on (−1/v_max, 0). Finite α: the edge is the fold of the real solution branch
(I − J singular), reached by a step-controlled real continuation from above.

Numerics: Newton on the vector g̃ with the exact Jacobian J = νz² diag(F²)·Vᵀ diag(w g²) V·diag(u), marched down
the grid with warm starts; damped fixed-point fallback when Newton fails or leaves Im g̃ ≥ 0.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._laws import Law

__all__ = [
    "variance_profile",
    "dyson_residual",
    "silverstein_edge",
    "fold_edge",
    "density_on_grid",
    "quantiles_from_density",
    "Spectrum",
    "frozen_losses",
]


def _g_t(x: Array, t: Array, eps: Array) -> Array:
    """g_t(x) = Σ_{r<t}(1 − εx)^r, exact at x = 0."""
    ex = eps * x
    small = jnp.abs(ex) < 1e-12
    safe = jnp.where(small, 1.0, ex)
    return jnp.where(small, t, (1.0 - (1.0 - ex) ** t) / safe)


def variance_profile(
    s: Float[Array, " ns"], lam: Float[Array, " nl"], t: Float[Array, ""], h: tuple
) -> Float[Array, "ns nl"]:
    """v(s, λ) after t steps (module docstring); ``h`` is a :class:`problem.Hyper`."""
    eps = h.lr / h.nu
    a = h.lr * h.gamma0
    x = s[:, None] * lam[None, :]
    decay = (1.0 - eps * x) ** (2.0 * t)
    data = h.rho * lam**2 + h.noise**2 * lam / h.alpha  # α = inf: no noise term
    return h.sigma**2 * decay + a**2 * s[:, None] * _g_t(x, t, eps) ** 2 * data[None, :]


def _maps(gt: Array, z: Array, v: Array, ws: Array, wl: Array, nu: float) -> tuple[Array, Array]:
    """F(g̃) and g(s) of the Dyson map."""
    g = -1.0 / (z * (1.0 + v @ (wl * gt)))
    F = -1.0 / (z * (1.0 + nu * (ws * g) @ v))
    return F, g


def dyson_residual(gt: Array, z: Array, v: Array, ws: Array, wl: Array, nu: float) -> Array:
    """F(g̃) − g̃ (zero at the solution)."""
    return _maps(gt, z, v, ws, wl, nu)[0] - gt


def _jacobian(gt: Array, z: Array, v: Array, ws: Array, wl: Array, nu: float) -> tuple[Array, Array]:
    F, g = _maps(gt, z, v, ws, wl, nu)
    J = nu * z**2 * (F**2)[:, None] * ((v.T * (ws * g**2)[None, :]) @ v) * wl[None, :]
    return F, J


def _newton(gt0: Array, z: Array, v: Array, ws: Array, wl: Array, nu: float, iters: int = 60,
            tol: float = 1e-12) -> tuple[Array, Array]:
    """Newton on F(g̃) = g̃; returns (g̃, converged)."""
    n = gt0.shape[0]
    eye = jnp.eye(n, dtype=gt0.dtype)

    def cond(c: tuple) -> Array:
        _, err, it = c
        return (err > tol) & (it < iters) & jnp.isfinite(err)

    def body(c: tuple) -> tuple:
        gt, _, it = c
        F, J = _jacobian(gt, z, v, ws, wl, nu)
        r = F - gt
        step = jnp.linalg.solve(J - eye, -r)
        new = gt + step
        err = jnp.max(jnp.abs(step)) / (jnp.max(jnp.abs(new)) + 1e-300)
        return new, err, it + 1

    gt, err, _ = jax.lax.while_loop(cond, body, (gt0, jnp.asarray(1.0), 0))
    res = jnp.max(jnp.abs(dyson_residual(gt, z, v, ws, wl, nu))) / (jnp.max(jnp.abs(gt)) + 1e-300)
    return gt, jnp.isfinite(res) & (res < 1e-9)


def _fixed_point(gt0: Array, z: Array, v: Array, ws: Array, wl: Array, nu: float, iters: int = 3000) -> Array:
    """Damped fixed-point iteration g̃ ← (g̃ + F(g̃))/2 (a contraction in the upper half plane)."""

    def body(_: int, gt: Array) -> Array:
        return 0.5 * (gt + _maps(gt, z, v, ws, wl, nu)[0])

    return jax.lax.fori_loop(0, iters, body, gt0)


def _solve_point(prev: Array, z: Array, v: Array, ws: Array, wl: Array, nu: float) -> tuple[Array, Array]:
    """Solution at z, warm-started from the previous grid point (nudged into the upper half plane)."""
    start = prev.real + 1j * jnp.maximum(prev.imag, 1e-3 * jnp.abs(prev))
    gt, ok = _newton(start, z, v, ws, wl, nu)
    ok = ok & jnp.all(gt.imag > -1e-10 * jnp.abs(gt))

    def fallback(_: None) -> tuple[Array, Array]:
        fp = _fixed_point(start, z, v, ws, wl, nu)
        out, ok2 = _newton(fp, z, v, ws, wl, nu)
        good = ok2 & jnp.all(out.imag > -1e-10 * jnp.abs(out))
        return jnp.where(good, out, fp), good | (jnp.max(jnp.abs(dyson_residual(fp, z, v, ws, wl, nu))) < 1e-8)

    return jax.lax.cond(ok, lambda _: (gt, ok), fallback, None)


class Spectrum(NamedTuple):
    """Singular-value law on a grid: ``grid`` (n,), ``density`` (n, mass 1 over nonzero values), ``mass`` (the
    integrated mass before normalization, relative to min(1, ν)), ``converged`` (all grid points solved)."""

    grid: Float[Array, " n"]
    density: Float[Array, " n"]
    mass: Float[Array, ""]
    converged: Array


def density_on_grid(
    v: Float[Array, "ns nl"], rows: Law, data: Law, nu: float, edge_sv: Float[Array, ""], n: int,
    rel_delta: float = 1e-6,
) -> Spectrum:
    """Density of the nonzero singular values of M on a uniform grid of n points in [0, 1.04·edge]: march down
    from the top with warm-started Newton at z = σ² + iδ, δ = rel_delta·x_max; the atom (1 − ν)⁺ at 0 is removed
    from E_λ g̃ analytically; normalized by its integrated mass."""
    ws, wl = rows.weights, data.weights
    top = 1.04 * edge_sv
    grid = jnp.linspace(0.0, top, n)
    x = grid**2
    delta = rel_delta * top**2
    zs = (x + 1j * delta)[::-1]
    start = (-1.0 / (zs[0] + 0.0j)) * jnp.ones(wl.shape[0], dtype=jnp.complex128)

    def step(prev: Array, z: Array) -> tuple[Array, tuple[Array, Array]]:
        gt, ok = _solve_point(prev, z, v, ws, wl, nu)
        return gt, (wl @ gt, ok)

    _, (m, ok) = jax.lax.scan(step, start, zs)
    m = m[::-1]
    atom = jnp.maximum(1.0 - nu, 0.0)
    m = m + atom / (x + 1j * delta)  # remove the atom's −(1 − ν)/z
    rho_x = jnp.clip(m.imag / jnp.pi, 0.0)
    dens = 2.0 * grid * rho_x
    mass = jnp.trapezoid(dens, grid)
    return Spectrum(grid, dens / mass, mass / jnp.minimum(1.0, nu), jnp.all(ok[::-1]))


def quantiles_from_density(grid: Array, density: Array, levels: Float[Array, " q"]) -> Float[Array, " q"]:
    """Quantiles of a normalized density on a grid: trapezoid CDF, linear inversion."""
    cdf = jnp.concatenate([jnp.zeros(1), jnp.cumsum(0.5 * (density[1:] + density[:-1]) * jnp.diff(grid))])
    cdf = cdf / cdf[-1]
    cdf = jax.lax.cummax(cdf)
    return jnp.interp(levels, cdf, grid)


def silverstein_edge(v: Float[Array, " ns"], w: Float[Array, " ns"], nu: float, iters: int = 200) -> Float[Array, ""]:
    """Top edge x₊ of eig(MᵀM) when v depends on s only: x₊ = z(m*), z'(m*) = 0 on (−1/v_max, 0), by bisection
    on z'(m) = 1/m² − νE[v²/(1 + vm)²], which increases on the interval."""
    vmax = jnp.max(jnp.where(w > 0, v, 0.0))

    def zprime(m: Array) -> Array:
        return 1.0 / m**2 - nu * jnp.sum(w * v**2 / (1.0 + v * m) ** 2)

    def body(_: int, c: tuple[Array, Array]) -> tuple[Array, Array]:
        lo, hi = c
        mid = 0.5 * (lo + hi)
        neg = zprime(mid) < 0
        return jnp.where(neg, mid, lo), jnp.where(neg, hi, mid)

    lo, hi = jax.lax.fori_loop(0, iters, body, (-1.0 / vmax, jnp.asarray(-1e-300 - 0.0)))
    m = 0.5 * (lo + hi)
    return -1.0 / m + nu * jnp.sum(w * v / (1.0 + v * m))


def _perron(J: Array, iters: int = 200) -> Array:
    """Spectral radius of a nonnegative matrix by power iteration."""

    def body(_: int, u: Array) -> Array:
        w = J @ u
        return w / jnp.linalg.norm(w)

    u = jax.lax.fori_loop(0, iters, body, jnp.ones(J.shape[0]) / jnp.sqrt(J.shape[0]))
    return jnp.linalg.norm(J @ u)


def fold_edge(
    v: Float[Array, "ns nl"], rows: Law, data: Law, nu: float, rel_tol: float = 1e-11, max_iter: int = 400
) -> tuple[Float[Array, ""], Array]:
    """Top edge x₊ of eig(MᵀM) for a 2D profile: continue the real solution branch of g̃ = F(g̃) down from
    x₀ = 1.2·v_max(1 + √ν)² with step control (accept a step only when Newton converges on the stable branch,
    ρ(J) < 1; grow the step ×1.5 after success, halve it after failure) until the step is below rel_tol·x.
    Returns (x₊, converged)."""
    ws, wl = rows.weights, data.weights
    vmax = jnp.max(v)
    x0 = 1.2 * vmax * (1.0 + jnp.sqrt(nu)) ** 2
    g0 = (-1.0 / x0) * jnp.ones(wl.shape[0])
    g0, _ = _newton(g0, x0, v, ws, wl, nu)

    def cond(c: tuple) -> Array:
        x, _, dx, it = c
        return (dx > rel_tol * x) & (it < max_iter)

    def body(c: tuple) -> tuple:
        x, g, dx, it = c
        xt = x - dx
        gn, ok = _newton(g, xt, v, ws, wl, nu, iters=40)
        _, J = _jacobian(gn, xt, v, ws, wl, nu)
        ok = ok & (xt > 0) & jnp.all(gn < 0) & (_perron(J) < 1.0)
        return (jnp.where(ok, xt, x), jnp.where(ok, gn, g), jnp.where(ok, 1.5 * dx, 0.5 * dx), it + 1)

    x, _, dx, it = jax.lax.while_loop(cond, body, (x0, g0, 0.1 * x0, 0))
    return x, dx <= rel_tol * x


def frozen_losses(
    t: Float[Array, " T"], h: tuple, rows: Law, data: Law
) -> tuple[Float[Array, " T"], Float[Array, " T"]]:
    r"""Per-channel (train, test) losses of the frozen-readout model at D = ∞. In the rotated bases,
    B̃ − Ã = (1 − x)^t b̃ − √s(1 − x)^t M̃₀/(γ0ν) − εs g_t ẽ with x = εsλ, so with E over the N rows
    (factor ν/κ = N/C) and over λ,

        test  = ½[(ν/κ)E_{s>0}E_λ(w_1) + (1 − min(1, ν/κ))ρ* + σ_ε²],
        w_1 = (1 − x)^{2t}(ρ* + sσ²/(γ0ν)²) + ε²s²g_t²σ_ε²λ/α,
        train = ½[(ν/κ)E_{s>0}E_λ(λw_1 − 2εsg_tσ_ε²λ/α) + (1 − min(1, ν/κ))ρ* + σ_ε²].
    """
    eps = h.lr / h.nu
    s, lam = rows.nodes, data.nodes
    ws = jnp.where(s > 0, rows.weights, 0.0)
    wl = data.weights
    noise_l = h.noise**2 * lam / h.alpha

    def at(tt: Array) -> tuple[Array, Array]:
        x = eps * s[:, None] * lam[None, :]
        r2 = (1.0 - x) ** (2.0 * tt)
        g = _g_t(s[:, None] * lam[None, :], tt, eps)
        w1 = r2 * (h.rho + s[:, None] * h.sigma**2 / (h.gamma0 * h.nu) ** 2) + (eps * s[:, None] * g) ** 2 * noise_l
        cross = 2.0 * eps * s[:, None] * g * noise_l
        frac = h.nu / h.kappa
        rest = (1.0 - jnp.minimum(1.0, frac)) * h.rho
        test = 0.5 * (frac * ws @ w1 @ wl + rest + h.noise**2)
        train = 0.5 * (frac * ws @ ((lam[None, :] * w1 - cross) @ wl) + rest + h.noise**2)
        return train, test

    return jax.vmap(at)(t)
