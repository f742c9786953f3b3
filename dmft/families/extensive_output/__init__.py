"""Extensive outputs: bulk restructuring of the first-layer spectrum (shared/theory/extensive_outputs.md).

A depth-1 linear network with C = κD output channels (loss summed over channels, mean over samples), trained by
full-batch GD under μP or NTK, with a trained or a frozen readout. With few outputs the trained first layer is its
initial bulk plus C outliers; with C ∝ D every step is an update of extensive rank and the bulk itself moves.

* theory (:mod:`.theory`): frozen readout — Dyson (variance-profile) equation for the whole singular-value
  density at every recorded step, population and finite α, exact at finite ν; full GD under μP — the exact ν = ∞
  mode-by-mode recursion; NTK — the lazy limit. Full GD at finite ν has no exact theory: :func:`.extrapolate`
  fits the twin at several D to D = ∞ with error bars (:mod:`.twin_extrapolate`).
* twin (:mod:`.twin`): the finite network in weight form (any α) and in the exact N-free Gram form.

This module is light: nothing heavy is imported until a callable runs.
"""

from __future__ import annotations

from typing import Any

from dmft.family import Family

from ._keys import ExtensiveOutputSection

__all__ = ["FAMILY", "ExtensiveOutputSection", "extrapolate"]


def _solve(cfg: Any) -> Any:
    """Theory, or the D → ∞ extrapolation of the twin where no exact theory exists (the theory module never
    imports the twin, so the dispatch lives here)."""
    from .problem import params_from_config, solver_of

    if solver_of(params_from_config(cfg)) == "extrapolate":
        return extrapolate(cfg)
    from .theory import solve_config

    return solve_config(cfg)


def _simulate(cfg: Any, progress: bool = False) -> Any:
    from .twin import simulate_config

    return simulate_config(cfg, progress)


def _figures(theory: Any = None, twin: Any = None) -> dict[str, Any]:
    from .figures import figures

    return figures(theory, twin)


def _sweep_figures(grid: Any) -> dict[str, Any]:
    from .figures import sweep_figures

    return sweep_figures(grid)


def _check(cfg: Any) -> None:
    from .problem import check_config

    check_config(cfg)


def extrapolate(cfg: Any, dims: Any = None, seeds: Any = None, section: Any = None) -> Any:
    """Twin at several D fitted to D = ∞ (edge ∝ D^{-2/3}, quantiles and losses ∝ 1/D), with error bars."""
    # The module is private (``twin_extrapolate``, a twin-side tool): a submodule named ``extrapolate`` would be
    # bound over this function as a package attribute on first import, and the next call would hit a module.
    from .twin_extrapolate import extrapolate as _extrapolate

    return _extrapolate(cfg, dims=dims, seeds=seeds, section=section)


def _initial_test_loss(**hyper: float) -> float:
    from .problem import Hyper, initial_test_loss

    return initial_test_loss(Hyper(**hyper))


def _lazy_loss(**kw: Any) -> Any:
    from ._infinite import lazy_test_loss

    return lazy_test_loss(**kw)


FAMILY = Family(
    name="extensive_output",
    summary="depth-1 linear network with C = κD outputs: the bulk of the first-layer spectrum restructures "
    "(frozen readout: exact Dyson equation; full GD: exact ν = ∞ limit, D → ∞ extrapolation at finite ν)",
    keys=(
        "model.width_ratio",
        "model.parameterization",
        "model.gamma0",
        "model.sigma",
        "model.sigma_readout",
        "data.alpha",
        "data.noise",
        "data.teacher_variance",
        "simulate.dim",
        "simulate.spectrum_every",
    ),
    solve=_solve,
    simulate=_simulate,
    figures=_figures,
    sweep_figures=_sweep_figures,
    section=ExtensiveOutputSection,
    oracles={"initial_test_loss": _initial_test_loss, "lazy_test_loss": _lazy_loss},
    papers=("2605.07870", "2511.18501"),
    parameterizations=("mup", "ntk"),
    smoke={"simulate.dim": 40, "simulate.seeds": 2, "optim.steps": 6, "extensive_output.grid": 64,
           "extensive_output.quad_rows": 200},
    check=_check,
    long_names={
        "spectrum_density": "density of the singular values of the first layer (nonzero ones, mass 1)",
        "sv_grid": "singular value (grid of spectrum_density)",
        "edge": "top edge of the first-layer singular values (twin: largest singular value)",
        "quantiles": "quantiles of the nonzero first-layer singular values",
        "q": "quantile level",
        "j": "grid index",
        "edge_err": "one-standard-error of the extrapolated edge",
        "quantiles_err": "one-standard-error of the extrapolated quantiles",
        "test_loss_err": "one-standard-error of the extrapolated test loss",
        "train_loss_err": "one-standard-error of the extrapolated train loss",
        "dim": "input dimension D of the twin",
        "edge_by_dim": "seed-mean top singular value at each D",
        "quantiles_by_dim": "seed-mean quantiles at each D",
        "test_loss_by_dim": "seed-mean per-channel test loss at each D",
        "edge_sem_by_dim": "standard error of the seed-mean top singular value at each D",
        "quantiles_sem_by_dim": "standard error of the seed-mean quantiles at each D",
        "atom": "mass of the singular values at σ (ν = ∞: the directions the teacher does not reach)",
        "mass": "integrated mass of spectrum_density (1 up to quadrature error)",
    },
)
