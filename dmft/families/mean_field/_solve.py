"""Config → theory Dataset for the mean-field family: engine choice, μP/NTK mapping, population test loss.

* Engine: ``solver.engine = "auto"`` takes the closed form (:mod:`._linear`) for linear φ and the Monte Carlo
  solver (``_monte_carlo.solve_monte_carlo``) otherwise; ``"closed_form"`` with a nonlinear φ is an error. The
  choice is made once (:func:`engine_of`) and returns an :class:`Engine`, whose ``run`` does level 1 and level 2.
* Parameterization: under NTK the theory describes the twin of width N = ``simulate.width`` with
  γ0 = γ̃0/√N (:func:`.problem.gamma0_of`, i.e. :func:`dmft.scaling.effective_gamma0`); as N → ∞ it tends to the
  lazy limit (:mod:`._lazy`).
* Test loss. With Q = ``data.test_points`` > 0: ½ mean over the test points. With Q = 0, linear φ and a synthetic
  teacher: the exact population loss (:func:`.problem.population_test_loss`). Otherwise (nonlinear φ or data from
  a file, Q = 0) there is no test loss and the variable is omitted.
* Sharpness (``solver.sharpness``): λ_max(K(t)/P) of the level-1 tangent kernel on the training points
  (:func:`.problem.stability_sharpness`, spectra.md §10), ``eos_ratio`` = η·sharpness/2, ``eos_step`` and
  ``eos_crossed``; values after ``eos_step`` are NaN (:func:`dmft.results.eos_variables`). The tangent update it
  linearizes is only first-order exact in η per step. Full-batch GD only: one-pass SGD has no DMFT route in the notes.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ...config import Config, ConfigError
from ...results import eos_variables, mask_after, status_variables
from ._types import MeanFieldSolution
from .problem import (
    MeanFieldData,
    PopulationPoints,
    common_coords,
    gamma0_of,
    input_gram,
    kernel_alignment,
    make_dataset,
    population_points,
    population_test_loss,
    spectrum_steps,
    stability_sharpness,
)

__all__ = ["solve_config", "theory_dataset", "solve_arrays", "Engine", "ENGINES", "engine_of"]

_MAX_KERNEL_GB = 8.0


class Engine(NamedTuple):
    """A theory engine: ``run(cfg, kx, data, hyper) -> (solution, level-2 results or {})``."""

    name: str
    run: Callable[[Config, jax.Array, MeanFieldData, dict], tuple[MeanFieldSolution, dict]]


def _run_closed_form(cfg: Config, kx: jax.Array, data: MeanFieldData, hyper: dict) -> tuple[MeanFieldSolution, dict]:
    from ._linear import march_linear, solution_from_state

    m, o, s = cfg.model, cfg.optim, cfg.solver
    st = march_linear(kx, data.y_train, steps=o.steps, output=s.output, divergence_threshold=s.divergence_threshold,
                      **hyper)
    sol = solution_from_state(st, kx, data.y_train, output=s.output, y_test=data.y_test, tol=s.tol, two_time=False,
                              **hyper)
    level2 = _linear_level2(st, cfg, hyper["gamma0"], int(data.x_train.shape[0])) if s.outliers and m.depth > 1 else {}
    return sol, level2


def _run_monte_carlo(cfg: Config, kx: jax.Array, data: MeanFieldData, hyper: dict) -> tuple[MeanFieldSolution, dict]:
    from ._monte_carlo import solve_monte_carlo

    m, o, s = cfg.model, cfg.optim, cfg.solver
    two_time = bool(s.outliers and m.depth > 1)
    sol = solve_monte_carlo(
        kx, data.y_train, activation=m.activation, key=jax.random.key(s.seed), steps=o.steps,
        samples=s.samples, iterations=s.iterations, damping=s.damping, response_damping=s.response_damping,
        response=s.response, output=s.output, tol=s.tol, y_test=data.y_test,
        divergence_threshold=s.divergence_threshold, two_time=two_time, **hyper,
    )
    level2 = _monte_carlo_level2(sol, kx, data, cfg, hyper["gamma0"]) if two_time else {}
    return sol, level2


ENGINES: dict[str, Engine] = {
    "closed_form": Engine("closed_form", _run_closed_form),
    "monte_carlo": Engine("monte_carlo", _run_monte_carlo),
}


def engine_of(cfg: Config) -> Engine:
    """The engine of a config (``solver.engine``, ``"auto"`` resolved by the activation)."""
    e, act = cfg.solver.engine, cfg.model.activation
    if e == "closed_form" and act != "linear":
        raise ConfigError(f"solver.engine = 'closed_form': needs model.activation = 'linear' (got {act!r}); use "
                          "'auto' or 'monte_carlo'")
    if e == "auto":
        e = "closed_form" if act == "linear" else "monte_carlo"
    return ENGINES[e]


def solve_arrays(cfg: Config) -> tuple[MeanFieldSolution, dict, MeanFieldData, PopulationPoints | None]:
    """The array-level solve of a config: (solution, level-2 results or {}, data, auxiliary points)."""
    engine = engine_of(cfg)
    data = make_dataset(cfg)
    aux = population_points(cfg, data)
    x_all = data.x_all if aux is None else jnp.concatenate([data.x_all, aux.x])
    kx = input_gram(x_all)
    m, o = cfg.model, cfg.optim
    n_pts = kx.shape[0]
    gb = 2 * (m.depth + 2) * o.steps * n_pts**2 * 8 / 1e9  # equal-time kernels Φ^ℓ(t,t), K(t) on all points
    if gb > _MAX_KERNEL_GB:
        raise ConfigError(f"data.test_points = {data.x_test.shape[0]}: the equal-time kernels on all "
                          f"{n_pts} points need ≈ {gb:.0f} GB (limit {_MAX_KERNEL_GB:.0f}); use fewer test points")
    hyper = dict(depth=m.depth, gamma0=gamma0_of(cfg), sigma=m.sigma, sigma_w=m.sigma_readout, lr=o.lr)
    sol, level2 = engine.run(cfg, kx, data, hyper)
    return sol, level2, data, aux


def _linear_level2(st, cfg: Config, g0: float, n_train: int) -> dict:
    from ...spectra.outliers import gram_consistency
    from ._spectra import linear_grams, linear_outliers

    m = cfg.model
    steps = spectrum_steps(cfg)
    outs, cons = [], []
    for layer in range(1, m.depth):
        kw = dict(depth=m.depth, gamma0=g0, sigma=m.sigma, lr=cfg.optim.lr, n_train=n_train)
        o = linear_outliers(st, layer, steps, k_max=cfg.solver.max_outliers, **kw)
        g, _ = linear_grams(st, layer, **kw)
        outs.append(o)
        cons.append(float(gram_consistency(g)))
    return _stack_level2(outs, cons, steps)


def _monte_carlo_level2(sol: MeanFieldSolution, kx, data: MeanFieldData, cfg: Config, g0: float) -> dict:
    from ._monte_carlo import MC_GRAM_THRESHOLD, monte_carlo_grams
    from ._spectra import hidden_layer_outliers

    m, s = cfg.model, cfg.solver
    steps = spectrum_steps(cfg)
    mg = monte_carlo_grams(kx, data.y_train, sol, activation=m.activation, depth=m.depth, gamma0=g0, sigma=m.sigma,
                           sigma_w=m.sigma_readout, lr=cfg.optim.lr, key=jax.random.key(s.seed + 1),
                           samples=s.samples, steps_at=steps)
    outs = [hidden_layer_outliers(jax.tree.map(lambda a, i=i: a[i], mg.grams), mg.c, sigma=m.sigma,
                                  k_max=s.max_outliers, threshold=MC_GRAM_THRESHOLD) for i in range(m.depth - 1)]
    cons = [float(jnp.max(mg.consistency[i])) for i in range(m.depth - 1)]
    return _stack_level2(outs, cons, steps)


def _stack_level2(outs: list, cons: list[float], steps: np.ndarray) -> dict:
    return {
        "outlier_sv": np.stack([np.asarray(o.sv) for o in outs]),
        "bulk_edge": np.array([float(np.asarray(o.edge).ravel()[0]) for o in outs]),
        "n_outliers": np.stack([np.asarray(o.n_outliers) for o in outs]),
        "outliers_converged": np.array([bool(np.all(o.converged)) for o in outs]),
        "gram_consistency": np.array(cons),
        "t_sv": steps,
    }


def theory_dataset(sol: MeanFieldSolution, level2: dict, cfg: Config, data: MeanFieldData,
                   aux: PopulationPoints | None) -> xr.Dataset:
    """The Dataset of the contract (train_loss, test_loss, f, ntk, ntk_alignment, Phi_diag, outliers, diagnostics)."""
    P, Q = data.x_train.shape[0], data.x_test.shape[0]
    M = P + Q
    t = np.arange(cfg.optim.steps)
    k = int(sol.divergence_step) if bool(sol.diverged) else -1

    def masked(a: object, t_axis: int = 0) -> np.ndarray:  # NaN after the divergence step (one convention)
        return mask_after(np.asarray(a), k, t, t_axis=t_axis)

    f_all = masked(sol.f)
    ntk = masked(np.asarray(sol.ntk)[:, :M, :M])
    y = np.asarray(data.y_train)
    ds = xr.Dataset(
        {
            "train_loss": ("t", masked(sol.train_loss)),
            "f": (("t", "point"), f_all[:, :M]),
            "ntk": (("t", "point", "point2"), ntk),
            "ntk_alignment": ("t", kernel_alignment(ntk[:, :P, :P], y)),
            "Phi_diag": (("layer_phi", "t", "point", "point2"), masked(np.asarray(sol.Phi_diag)[1:, :, :M, :M], 1)),
            "residual": ((), float(sol.residual)),
            **status_variables(bool(sol.diverged), int(sol.divergence_step), bool(sol.converged)),
            "mc_error": ("t", np.asarray(sol.mc_error)),
        },
        coords=common_coords(cfg, data),
    )
    if Q > 0:
        ds["test_loss"] = ("t", masked(sol.test_loss))
        ds["test_loss"].attrs["formula"] = "½ mean over the Q test points of (f − y)²"
    elif aux is not None:
        ds["test_loss"] = ("t", population_test_loss(f_all, data, aux))
        ds["test_loss"].attrs["formula"] = "½E(f(x) − y)² over fresh pairs (exact for linear φ)"
    ds["train_loss"].attrs["formula"] = "½ P⁻¹ Σ_μ Δ_μ(t)²"
    ds["ntk_alignment"].attrs["formula"] = "yᵀK(t)y / (‖K(t)‖_F |y|²), training points"
    engine = engine_of(cfg).name
    ds.attrs.update(n_train=P, n_test=Q, gamma0_effective=gamma0_of(cfg), engine=engine, output=cfg.solver.output)
    if level2:
        _add_level2(ds, level2, cfg)
    if cfg.solver.sharpness:
        ds = ds.assign(eos_variables(stability_sharpness(ntk, P), cfg.optim.lr))
        ds["sharpness"].attrs["note"] = (f"λ_max(K(t)/P), training points; 2/η = {2 / cfg.optim.lr:.6g}; NaN after "
                                         "eos_step (the theory is not a description past the first crossing of 2/η)")
    if bool(sol.diverged) and engine == "monte_carlo" and not bool(sol.converged):
        warnings.warn(
            f"mean_field Monte Carlo DMFT did not converge in solver.iterations = {cfg.solver.iterations} (residual "
            f"{float(sol.residual):.3g}) and its last iterate exceeds the divergence threshold at step "
            f"{int(sol.divergence_step)}: either lr = {cfg.optim.lr} is past stability or the iteration needs more "
            "iterations; outputs after that step are NaN and 'diverged' is set", RuntimeWarning, stacklevel=3)
    elif bool(sol.diverged):
        warnings.warn(
            f"mean_field DMFT diverged at step {int(sol.divergence_step)} (lr = {cfg.optim.lr} is past stability): "
            "outputs after that step are NaN and 'diverged' is set", RuntimeWarning, stacklevel=3)
    elif not bool(sol.converged):
        warnings.warn(f"mean_field DMFT did not converge (residual {float(sol.residual):.3g} > solver.tol = "
                      f"{cfg.solver.tol}): see 'residual'", RuntimeWarning, stacklevel=3)
    return ds


def _add_level2(ds: xr.Dataset, lv: dict, cfg: Config) -> None:
    """Level 2 on the step axis ``t`` (as for every family): NaN and n_outliers = −1 at the steps where it was
    not evaluated (``outlier_evaluated``); the evaluated steps are the twin's record steps ``t_spec``."""
    L, T = cfg.model.depth, cfg.optim.steps
    steps = np.asarray(lv["t_sv"], dtype=int)
    k_max = lv["outlier_sv"].shape[-1]
    ds.coords["layer"] = np.arange(1, L)
    ds.coords["k"] = np.arange(k_max)
    sv_steps = lv["outlier_sv"]
    if bool(ds["diverged"]):
        sv_steps = np.where((steps > int(ds["divergence_step"]))[None, :, None], np.nan, sv_steps)
    sv = np.full((L - 1, T, k_max), np.nan)
    sv[:, steps] = sv_steps
    n_out = np.full((L - 1, T), -1)
    n_out[:, steps] = lv["n_outliers"]
    evaluated = np.zeros(T, dtype=bool)
    evaluated[steps] = True
    ds["outlier_sv"] = (("layer", "t", "k"), sv)
    ds["outlier_sv"].attrs["note"] = "NaN: no outlier, or not evaluated (outlier_evaluated); bulk edge 2σ"
    ds["outlier_evaluated"] = ("t", evaluated)
    ds["bulk_edge"] = ("layer", lv["bulk_edge"])
    ds["n_outliers"] = (("layer", "t"), n_out)
    ds["n_outliers"].attrs["note"] = "−1 at steps where level 2 was not evaluated"
    born = np.isfinite(sv)
    ds["escape_step"] = (("layer", "k"), np.where(born.any(axis=1), born.argmax(axis=1), -1))
    ds["escape_step"].attrs["note"] = "first evaluated step at which outlier k is above the bulk edge (−1: never)"
    ds["outliers_converged"] = ("layer", lv["outliers_converged"])
    ds["gram_consistency"] = ("layer", lv["gram_consistency"])


def solve_config(cfg: Config) -> xr.Dataset:
    """Theory for one config (family ``mean_field``): level 1 and, with ``solver.outliers``, level 2."""
    sol, level2, data, aux = solve_arrays(cfg)
    return theory_dataset(sol, level2, cfg, data, aux)
