"""Deep linear networks in the proportional limit (``family = "deep_linear"``, shared/theory/deep_linear.md).

Modules: :mod:`.problem` (parameters shared by theory and twin), :mod:`.theory` (level-1 DMFT march),
:mod:`.spectra` (level 2: outliers), :mod:`.twin` (the finite-width network), :mod:`.figures`. The array-level
theory API (``solve``, ``params_from_config``, oracles, …) is re-exported here on first use.
"""

from __future__ import annotations

from typing import Any

from ...family import Family
from ._problem_kernel_names import KERNEL_LONG_NAMES

__all__ = ["FAMILY"]


def _theory() -> Any:
    from . import theory

    return theory


def _twin() -> Any:
    from . import twin

    return twin


def _figures() -> Any:
    from . import figures

    return figures


def _check(cfg: Any) -> None:
    """The twin's width N = ν·D must be at least 1."""
    from ...config import ConfigError

    n = round(cfg.model.width_ratio * cfg.simulate.dim)
    if n < 1:
        raise ConfigError(f"simulate.dim = {cfg.simulate.dim}: width N = width_ratio·dim = {n} must be >= 1")


FAMILY = Family(
    name="deep_linear",
    summary="deep linear networks, proportional limit (D, N, P → ∞ at fixed ν, α); μP or NTK; GD or one-pass SGD",
    keys=(
        "model.depth", "model.width_ratio", "model.gamma0", "model.sigma", "model.sigma_readout",
        "data.alpha", "data.noise", "data.teacher_variance",
        "optim.batch_ratio",
        "simulate.dim", "simulate.spectrum_every", "simulate.record_spectra",
        "solver.tol", "solver.outliers", "solver.max_outliers", "solver.outlier_every",
        "solver.sharpness", "solver.kernel",
    ),
    parameterizations=("mup", "ntk"),
    solve=lambda cfg: _theory().solve_config(cfg),
    solve_batch=lambda cfgs: _theory().solve_batch(cfgs),
    simulate=lambda cfg, progress=False: _twin().simulate_config(cfg, progress=progress),
    figures=lambda theory, sim: _figures().figures(theory, sim),
    sweep_figures=lambda grid: _figures().sweep_figures(grid),
    oracles={
        "first_step_test_loss": lambda p: _theory().first_step_test_loss(p),
        "lazy_test_loss": lambda *a, **k: _theory().lazy_test_loss(*a, **k),
    },
    papers=("2502.02531", "2605.07870"),
    long_names=KERNEL_LONG_NAMES,
    check=_check,
    smoke={"optim.steps": 6, "simulate.dim": 24, "simulate.seeds": 2, "solver.outliers": True},
)


def __getattr__(name: str) -> Any:
    # forward public theory names only; submodules (theory, twin, figures, problem, _private) import normally
    if name.startswith("_") or name in ("theory", "twin", "figures", "problem", "spectra"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        return getattr(_theory(), name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
