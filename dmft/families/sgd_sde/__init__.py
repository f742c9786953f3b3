"""SGD as a stochastic differential equation (``family = "sgd_sde"``, shared/theory/sgd_sde.md).

Modules: :mod:`.problem` (instances, drifts, recorded steps, measurements and the Dataset shared by theory and
twin), :mod:`.theory` (matrix and singular-value SDEs, stationary laws, phase boundaries), :mod:`.twin` (minibatch
SGD; imports :mod:`.problem` only), :mod:`.figures`. The array-level theory API is re-exported here on first use.
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
    # phase_teacher: the drift with both a train and a test loss (noise has no loss, teacher's one-pass loss is
    # the population test loss)
    smoke={"model.drift": "phase_teacher", "model.rows": 4, "model.cols": 8, "data.samples": 16, "optim.steps": 11,
           "simulate.seeds": 2, "solver.ensemble": 2},
    long_names={
        "sv": "singular values of W (descending)",
        "sum_sq": "|W|_F² = Σ s_i²",
        "diffusion0": "gradient-noise diffusion 𝒟 = ησ²/B at W(0)",
        "teacher_sv": "singular values of the teacher W*",
        "drift_gap": "phase criterion: drift gap K_t = |K̃_11| − |K̃_hh|",
        "coulomb_gap": "phase criterion: Coulomb gap V_t",
        "ordered": "phase criterion holds: K_t ≥ Θ V_t/Δ̄",
        "tc_estimate": "temperature at which the run would flip: T_c = K_t Δ̄ / V_t",
        "overlap": "overlap q of initial and final soft spins",
        "overlap_normalized": "overlap q normalised by the spin norms",
        "alignment": "alignment m of the final spins with the teacher field",
        "preact_var": "final preactivation variance σ_z² = mean (W h⁰)²",
        "spacing_growth": "growth rate λ_L of the mean nearest-neighbour spacing of s²",
        "phase": "phase of the run (index into phase_name)",
        "p_ordered": "fraction of runs in the ordered phase",
        "phase_fraction": "fraction of runs in each phase",
        "theta": "temperature Θ = η/B",
        "mp_init_edge": "Marchenko–Pastur singular-value edges of W(0)",
        "expected_sum_sq": "exact E|W_t|² (pure noise)",
        "stationary_edge": "singular-value edges of the stationary Laguerre law",
        "stationary_sum_sq": "stationary E|W|² of the Laguerre law",
        "gamma_1d_shape": "shape of the 1-D gamma law of s² (no repulsion)",
        "gamma_1d_rate": "rate of the 1-D gamma law of s² (no repulsion)",
        "gamma_type_shape": "shape of the provisional gamma-type law of s² (2507.12709)",
        "gamma_type_rate": "rate of the provisional gamma-type law of s² (2507.12709)",
        "expected_test_loss": "exact expected test loss of one-pass SGD on the linear teacher",
        "tau": "SGD time τ = η t",
        "member": "SDE ensemble member (paired with twin seed of the same index)",
        "i": "singular-value index (descending)",
        "edge": "lower or upper edge",
        "phase_name": "phase",
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
