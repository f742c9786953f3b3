r"""Theory of the extensive-output model: one entry point, three solvers (extensive_outputs.md §5–§7).

* ``dyson`` (frozen readout, any ν, population or finite α): the singular-value density of W⁰ at every recorded
  step from the variance-profile Dyson equation (:mod:`._dyson`), its top edge (population: Silverstein critical
  point; finite α: fold of the real branch), its quantiles; per-channel losses at every step in closed form.
* ``infinite_width`` (full GD, population): μP — the exact ν = ∞ mode recursion (:mod:`._infinite`), spectrum of
  W⁰/√N = √k_t(b) on a fraction min(κ, 1) and σ on the rest; NTK — the lazy limit (the spectrum stays at σ).
* ``extrapolate`` (full GD at finite ν: no exact theory): the twin at several D fitted to D = ∞
  (:mod:`.twin_extrapolate`).

Never imports the twin. Everything runs in float64 (``jax.enable_x64`` context), compiled once per size.
"""

from __future__ import annotations

import warnings
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from dmft.results import record_steps

from ._dyson import (
    density_on_grid,
    fold_edge,
    frozen_losses,
    quantiles_from_density,
    silverstein_edge,
    variance_profile,
)
from ._infinite import lazy_test_loss, mixture_cdf, mixture_density, mixture_quantiles, modes
from ._laws import Law, data_law, row_law, teacher_law
from .problem import Hyper, Problem, check_config, params_from_config, solver_of, sv_scale

__all__ = ["solve_config", "solve_dyson", "solve_infinite_width", "dyson_step"]


# ------------------------------------------------------------------------------------------------------------
# Frozen readout: Dyson
# ------------------------------------------------------------------------------------------------------------


def dyson_step(t: Array, h: Hyper, rows: Law, data: Law, n_grid: int, levels: Array, population: bool) -> dict:
    """Edge (singular value), density on its grid, quantiles and mass after t steps (M⁰ units)."""
    v = variance_profile(rows.nodes, data.nodes, t, h)
    if population:
        x_edge = silverstein_edge(v[:, 0], rows.weights, h.nu)
        edge_ok = jnp.isfinite(x_edge)
    else:
        x_edge, edge_ok = fold_edge(v, rows, data, h.nu)
    edge = jnp.sqrt(x_edge)
    spec = density_on_grid(v, rows, data, h.nu, edge, n_grid)
    q = quantiles_from_density(spec.grid, spec.density, levels)
    return {"edge": edge, "grid": spec.grid, "density": spec.density, "quantiles": q, "mass": spec.mass,
            "converged": spec.converged & edge_ok}


@partial(jax.jit, static_argnames=("n_grid", "population"))
def _dyson(ts: Array, hv: Array, rows: Law, data: Law, levels: Array, n_grid: int, population: bool) -> dict:
    h = Hyper(*hv)
    return jax.lax.map(lambda t: dyson_step(t, h, rows, data, n_grid, levels, population), ts)


@jax.jit
def _frozen_losses(t: Array, hv: Array, rows: Law, data: Law) -> tuple[Array, Array]:
    return frozen_losses(t, Hyper(*hv), rows, data)


def solve_dyson(prob: Problem) -> dict[str, np.ndarray]:
    """Frozen-readout theory of a problem: raw arrays (M⁰ units)."""
    h, sec = prob.hyper, prob.section
    rec = record_steps(prob.steps, prob.every)
    with jax.enable_x64(True):
        rows = row_law(h.nu, h.kappa, h.sigma_w, sec.quad_rows)
        data = data_law(h.alpha, sec.quad_data)
        hv = jnp.asarray(h, dtype=jnp.float64)
        out = _dyson(jnp.asarray(rec, dtype=jnp.float64), hv, rows, data,
                     jnp.asarray(sec.quantiles, dtype=jnp.float64), sec.grid, prob.population)
        train, test = _frozen_losses(jnp.arange(prob.steps, dtype=jnp.float64), hv, rows, data)
        out = jax.device_get({**out, "train_loss": train, "test_loss": test})
    return {k: np.asarray(v) for k, v in out.items()}


# ------------------------------------------------------------------------------------------------------------
# Full GD at ν = ∞
# ------------------------------------------------------------------------------------------------------------


@partial(jax.jit, static_argnames=("steps", "n_grid"))
def _infinite(hv: Array, law: Law, rec: Array, levels: Array, steps: int, n_grid: int) -> dict:
    h = Hyper(*hv)
    frac = jnp.minimum(h.kappa, 1.0)
    m = modes(law.edges, h.lr, h.gamma0, h.sigma, h.sigma_w, steps)
    mn = modes(law.nodes, h.lr, h.gamma0, h.sigma, h.sigma_w, steps)
    loss = 0.5 * jnp.minimum(1.0, 1.0 / h.kappa) * ((law.nodes[None, :] - mn.a) ** 2 @ law.weights)
    sv_edges = jnp.sqrt(jnp.clip(m.k[rec], 0.0))  # (n_rec, n_edges)

    def at(y_edges: Array) -> dict:
        top = jnp.maximum(jnp.max(y_edges), jnp.where(frac < 1, h.sigma, 0.0))
        grid = jnp.linspace(0.0, 1.04 * top, n_grid)
        return {"edge": top, "grid": grid, "density": mixture_density(grid, y_edges, law, frac),
                "quantiles": mixture_quantiles(levels, y_edges, law, frac, h.sigma),
                "mass": mixture_cdf(grid[-1:], y_edges, law, frac, h.sigma)[0]}

    return {**jax.vmap(at)(sv_edges), "train_loss": loss, "test_loss": loss}


def solve_infinite_width(prob: Problem) -> dict[str, np.ndarray]:
    """Full GD at ν = ∞ (W⁰/√N units): μP mode recursion or NTK lazy limit."""
    h, sec = prob.hyper, prob.section
    rec = record_steps(prob.steps, prob.every)
    levels = np.asarray(sec.quantiles, dtype=float)
    n_rec = rec.size
    with jax.enable_x64(True):
        if prob.ntk:
            # γ0 = γ̃0/√ν → 0: the spectrum stays at σ; the function follows the frozen NTK σ² + σ_w².
            gt = h.gamma0 * np.sqrt(h.nu)
            loss = np.asarray(lazy_test_loss(h.lr, gt, h.sigma, h.sigma_w, h.rho, prob.steps))
            grid = np.linspace(0.0, 1.04 * h.sigma, sec.grid)
            return {"edge": np.full(n_rec, h.sigma), "grid": np.tile(grid, (n_rec, 1)),
                    "density": np.zeros((n_rec, sec.grid)), "quantiles": np.full((n_rec, levels.size), h.sigma),
                    "mass": np.zeros(n_rec), "train_loss": loss, "test_loss": loss, "atom": 1.0,
                    "converged": np.ones(n_rec, bool)}
        law = teacher_law(h.kappa, h.rho, sec.quad_rows)
        out = _infinite(jnp.asarray(h, dtype=jnp.float64), law, jnp.asarray(rec), jnp.asarray(levels),
                        prob.steps, sec.grid)
        out = {k: np.asarray(v) for k, v in jax.device_get(out).items()}
    out["atom"] = 1.0 - min(h.kappa, 1.0)
    out["converged"] = np.ones(n_rec, bool)
    return out


# ------------------------------------------------------------------------------------------------------------
# Config entry point and packaging
# ------------------------------------------------------------------------------------------------------------


def solve_config(cfg: Any, section: Any = None) -> Any:
    """Theory of one config as an xarray Dataset on the common schema (dmft/results.py)."""
    check_config(cfg, section)
    prob = params_from_config(cfg, section)
    solver = solver_of(prob)
    if solver == "extrapolate":
        raise ValueError("extensive_output: the 'extrapolate' reference runs the twin; call "
                         "dmft.families.extensive_output.extrapolate (FAMILY.solve dispatches to it)")
    raw = solve_dyson(prob) if solver == "dyson" else solve_infinite_width(prob)
    scale = sv_scale(prob.section.units, prob.hyper.nu) if solver == "dyson" else 1.0
    return to_dataset(raw, prob, solver, scale)


def to_dataset(raw: dict[str, Any], prob: Problem, solver: str, scale: float) -> Any:
    """Package raw theory arrays: losses on ``t``; edge, quantiles, density (on ``sv_grid``) on ``t_spec``."""
    import xarray as xr

    from dmft.results import divergence, finalize, mask_after, status_variables

    from . import FAMILY

    T = prob.steps
    t = np.arange(T)
    rec = record_steps(T, prob.every)
    tr, te = raw["train_loss"], raw["test_loss"]
    d1, s1 = divergence(tr, prob.divergence_threshold)
    d2, s2 = divergence(te, prob.divergence_threshold)
    cands = [int(s) for s in (s1, s2) if s >= 0]
    step = min(cands) if cands else -1
    converged = bool(np.all(raw["converged"]))
    ds = xr.Dataset(
        {
            "train_loss": ("t", mask_after(tr, step, t)),
            "test_loss": ("t", mask_after(te, step, t)),
            "edge": ("t_spec", mask_after(scale * raw["edge"], step, rec)),
            "quantiles": (("t_spec", "q"), mask_after(scale * raw["quantiles"], step, rec, t_axis=0)),
            "spectrum_density": (("t_spec", "j"), mask_after(raw["density"] / scale, step, rec, t_axis=0)),
            "mass": ("t_spec", raw["mass"]),
            **status_variables(bool(d1 or d2), step, converged),
        },
        coords={"t": t, "t_spec": rec, "q": np.asarray(prob.section.quantiles, dtype=float),
                "j": np.arange(raw["grid"].shape[-1]), "sv_grid": (("t_spec", "j"), scale * raw["grid"])},
        attrs={"family": "extensive_output", "kind": "theory", "solver": solver,
               "units": "width" if solver == "infinite_width" else prob.section.units,
               "readout": prob.section.readout, "limit": "nu=inf" if solver == "infinite_width" else "D=inf"},
    )
    if "atom" in raw:
        ds["atom"] = ((), float(raw["atom"]))
    if not converged:
        warnings.warn("extensive_output theory: some grid points or edges did not converge ('converged' is "
                      "False)", RuntimeWarning, stacklevel=3)
    if step >= 0:
        warnings.warn(f"extensive_output theory diverged at step {step}: later values are NaN", RuntimeWarning,
                      stacklevel=3)
    return finalize(ds, FAMILY.long_names)
