"""μP networks at infinite width with finite data (``family = "mean_field"``, shared/theory/mean_field.md).

Modules: :mod:`.problem` (data, activations, γ0 rule and recorded steps shared by theory and twin), :mod:`.theory`
(kernel DMFT: closed form for linear φ, Monte Carlo single-site solver otherwise; level 2), :mod:`.twin` (imports
:mod:`.problem` only), :mod:`.figures`. The
array-level theory API is re-exported here on first use.
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
    name="mean_field",
    summary="μP infinite-width networks on P fixed points; linear φ in closed form, relu/tanh/erf by Monte Carlo",
    keys=(
        "model.depth", "model.gamma0", "model.sigma", "model.sigma_readout", "model.activation",
        "data.noise", "data.teacher_variance", "data.points", "data.test_points", "data.input_dim", "data.teacher",
        "data.file", "data.seed",
        "simulate.width", "simulate.spectrum_every",
        "solver.tol", "solver.outliers", "solver.max_outliers", "solver.samples", "solver.seed", "solver.response",
        "solver.engine", "solver.output", "solver.response_damping", "solver.iterations", "solver.damping",
        "solver.sharpness",
    ),
    parameterizations=("mup", "ntk"),
    solve=lambda cfg: _theory().solve_config(cfg),
    simulate=lambda cfg, progress=False: _twin().simulate_config(cfg, progress=progress),
    figures=lambda theory, sim: _figures().figures(theory, sim),
    sweep_figures=lambda grid: _figures().sweep_figures(grid),
    oracles={"lazy_oracle": lambda *a, **k: _theory().lazy_oracle(*a, **k)},
    papers=("2205.09653", "2605.07870"),
    smoke={"optim.steps": 6, "data.points": 6, "simulate.width": 64, "simulate.seeds": 2},
    long_names={
        "f": "network output f_μ(t) on every point (training points first)",
        "ntk": "tangent kernel K_μν(t) = Σ_ℓ G^{ℓ+1}(t,t)∘Φ^ℓ(t,t)",
        "ntk_alignment": "kernel alignment yᵀK(t)y / (‖K(t)‖_F |y|²) on the training points",
        "Phi_diag": "equal-time feature kernel Φ^ℓ(t,t) = ⟨φ(h^ℓ)φ(h^ℓ)ᵀ⟩, ℓ = layer_phi",
        "point": "data point μ (P training points, then Q test points)",
        "point2": "data point ν (second index of a kernel)",
        "layer_phi": "layer ℓ of the feature kernel Φ^ℓ",
        "layer": "hidden matrix index ℓ of M^ℓ = W^ℓ/√N",
        "outlier_sv": "outlier singular values of M^layer = W^layer/√N (NaN: no outlier or step not evaluated)",
        "top_sv": "largest singular values of W^layer/√N (twin; bulk edge 2σ)",
        "twin_width": "hidden width N of the twin",
        "sharpness": "λ_max of the stability kernel K̃ = K(t)/P = γ0²N JJᵀ/P on the training points",
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
