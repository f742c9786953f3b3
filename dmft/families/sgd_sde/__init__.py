"""SGD as a stochastic differential equation (``family = "sgd_sde"``, shared/theory/sgd_sde.md).

Modules: :mod:`._problem` / :mod:`._dataset` (instances and data shared by theory and twin), :mod:`.theory`
(matrix and singular-value SDEs, stationary laws, phase criterion), :mod:`.twin` (minibatch SGD),
:mod:`.figures`. The array-level theory API is re-exported here on first use.
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


FAMILY = Family(
    name="sgd_sde",
    summary="SGD as a matrix SDE: Dyson-type singular-value dynamics, stationary laws, SGD phase diagram",
    keys=(
        "model.rows", "model.cols", "model.drift", "model.sigma",
        "data.noise", "data.teacher_variance", "data.samples",
        "optim.batch_size", "optim.grad_noise", "optim.weight_decay",
        "solver.ensemble", "solver.record_every", "solver.level", "solver.substeps", "solver.noise_model",
    ),
    solve=lambda cfg: _theory().solve_config(cfg),
    solve_batch=lambda cfgs: _theory().solve_batch(cfgs),
    simulate=lambda cfg, progress=False: _twin().simulate_config(cfg, progress=progress),
    figures=lambda theory, sim: _figures().figures(theory, sim),
    sweep_figures=lambda grid: _figures().sweep_figures(grid),
    oracles={"laguerre_stationary": lambda *a, **k: _theory().laguerre_stationary(*a, **k)},
    papers=("2507.12709", "2509.01349"),
    smoke={"optim.steps": 20, "simulate.seeds": 2, "solver.ensemble": 2},
)


def __getattr__(name: str) -> Any:
    # forward public theory names only; submodules (theory, twin, figures, problem, _private) import normally
    if name.startswith("_") or name in ("theory", "twin", "figures", "problem", "spectra"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        return getattr(_theory(), name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
