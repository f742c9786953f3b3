"""Diagonal linear networks (``family = "diagonal_linear"``, shared/theory/diagonal_linear.md).

Modules: :mod:`.problem` (teacher, initialisation, recorded steps shared by theory and twin), :mod:`.theory`
(DMFT effective process by Monte Carlo, oracles), :mod:`.twin`, :mod:`.figures`. The array-level theory API is
re-exported here on first use.
"""

from __future__ import annotations

from typing import Any

from ...family import Family

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
    """Cross-key rules: Monte Carlo replicas and samples, sparse prior, snapshot steps."""
    from ...config import ConfigError

    sv = cfg.solver
    if sv.replicas == 1 or (sv.replicas and sv.samples // sv.replicas < 8):
        raise ConfigError(
            f"solver.replicas = {sv.replicas}: must be 0 or >= 2 with at least 8 samples each "
            f"(solver.samples = {sv.samples})"
        )
    if cfg.data.prior == "sparse" and cfg.data.sparsity * sv.samples < 8:
        raise ConfigError(
            f"data.sparsity = {cfg.data.sparsity}: fewer than 8 of solver.samples = {sv.samples} would be "
            "nonzero; raise solver.samples or the sparsity"
        )
    snaps = cfg.simulate.snapshots
    if snaps is not None and max(snaps) >= cfg.optim.steps:
        raise ConfigError(f"simulate.snapshots = {list(snaps)!r}: steps must be < optim.steps = {cfg.optim.steps}")


FAMILY = Family(
    name="diagonal_linear",
    summary="diagonal linear networks β = u⊙v or u₊² − u₋²: implicit bias, incremental learning, rates",
    keys=(
        "model.init_scale", "model.form",
        "data.alpha", "data.noise", "data.teacher_variance", "data.prior", "data.sparsity",
        "optim.weight_decay",
        "simulate.dim", "simulate.snapshots",
        "solver.tol", "solver.samples", "solver.seed", "solver.method", "solver.response", "solver.replicas",
        "solver.iterations", "solver.damping",
    ),
    solve=lambda cfg: _theory().solve_config(cfg),
    solve_batch=lambda cfgs: _theory().solve_batch(cfgs),
    simulate=lambda cfg, progress=False: _twin().simulate_config(cfg, progress=progress),
    figures=lambda theory, sim: _figures().figures(theory, sim),
    sweep_figures=lambda grid: _figures().sweep_figures(grid),
    oracles={
        "t1_test_loss": lambda *a, **k: _theory().t1_test_loss(*a, **k),
        "fixed_point": lambda *a, **k: _theory().fixed_point(*a, **k),
        "small_init_limit": lambda *a, **k: _theory().small_init_limit(*a, **k),
    },
    papers=("2510.01930",),
    check=_check,
    smoke={"optim.steps": 8, "simulate.dim": 64, "simulate.seeds": 2, "solver.samples": 256},
    long_names={
        "C_beta": "C_β̃(t,s) = E (β − β*)(t)(β − β*)(s)",
        "R_beta": "R(t,s) = E ∂β(t)/∂ρ(s), response of β to the residual field",
        "C_delta": "C_Δ(t,s), covariance of the training residual",
        "beta": "β at the snapshot steps (theory: Monte Carlo samples of the coordinate site; twin: coordinates)",
        "beta_star": "teacher β* (theory: samples of the prior; twin: coordinates)",
        "train_loss_mcse": "Monte Carlo standard error of the train loss (replica spread)",
        "test_loss_mcse": "Monte Carlo standard error of the test loss (replica spread)",
        "test_loss_lazy": "test loss of the lazy limit a → ∞ at fixed ηa²",
        "train_loss_lazy": "train loss of the lazy limit a → ∞ at fixed ηa²",
        "test_loss_small_init": "test loss of the frozen-field (search-phase) model",
        "test_loss_fixed_point": "test loss at the gradient-flow fixed point (t → ∞)",
        "late_rate_oracle": "λ_min: train loss ∝ (1 − ηλ_min)^{2t} near the fixed point",
        "residual_history": "self-consistency residual per iteration",
        "degenerate_rows": "rows of the causal factor of αC_Δ with a zero pivot",
        "t_snap": ("step of a β snapshot", "steps"),
        "i": "coordinate index (theory: Monte Carlo sample of the coordinate site)",
        "s": ("earlier step s of a two-time function", "steps"),
        "iteration": "self-consistency iteration",
    },
)


def __getattr__(name: str) -> Any:
    # forward public theory names only; submodules (theory, twin, figures, problem, _private) import normally
    if name.startswith("_") or name in ("theory", "twin", "figures", "problem", "spectra"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        return getattr(_theory(), name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
