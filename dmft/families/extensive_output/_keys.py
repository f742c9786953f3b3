"""Family-only config keys of ``extensive_output``, read from the TOML table ``[extensive_output]``.

Light module (no JAX): :mod:`dmft.families.extensive_output` imports it to build ``FAMILY.section``.
"""

from __future__ import annotations

from dataclasses import dataclass

from dmft.config import key

__all__ = ["ExtensiveOutputSection", "DEFAULT_QUANTILES"]

DEFAULT_QUANTILES: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 0.9, 0.99)


@dataclass(frozen=True)
class ExtensiveOutputSection:
    """Keys of the extensive-output model (shared/theory/extensive_outputs.md §2, §5, §6, §8)."""

    outputs_ratio: float = key(1.0, "float", "κ = C/D: outputs per input dimension", lo=0, lo_open=True, hi=64)
    outputs: int | None = key(
        None, "int", "C: a fixed number of outputs (replaces outputs_ratio; theory uses κ = C/simulate.dim)",
        lo=1, optional=True,
    )
    readout: str = key(
        "trained", "str", "train the readout too (full GD) or keep it at its initialization (frozen, §5)",
        choices=("trained", "frozen"),
    )
    population: bool = key(True, "bool", "population loss (α = ∞, whitened inputs, no label noise); false: data.alpha")
    theory: str = key(
        "auto", "str", "solver: dyson (frozen readout, exact at finite ν), infinite_width (full GD, ν = ∞: μP "
        "mode recursion, NTK lazy limit), extrapolate (twin at several D fitted to D = ∞); auto: dyson when "
        "frozen, else infinite_width in width units, else extrapolate",
        choices=("auto", "dyson", "infinite_width", "extrapolate"),
    )
    units: str = key(
        "input", "str", "singular values of W⁰/√D (input, library convention) or of W⁰/√N (width: comparable "
        "across ν, finite at ν = ∞)", choices=("input", "width"),
    )
    twin_form: str = key(
        "auto", "str", "twin: exact N-free Gram form (cost independent of N) or weight form; auto: Gram form "
        "for the population loss, weight form otherwise", choices=("auto", "gram", "weight"),
    )
    grid: int = key(300, "int", "Dyson: points of the singular-value grid of each recorded step", lo=16, hi=100_000)
    quad_rows: int = key(
        2000, "int", "Dyson / ν = ∞: quadrature nodes of the row-variance law (s) or of the teacher modes (b)",
        lo=16, hi=1_000_000,
    )
    quad_data: int = key(60, "int", "Dyson, finite α: quadrature nodes of the input-covariance law (λ)", lo=4,
                         hi=10_000)
    quantiles: tuple[float, ...] = key(
        DEFAULT_QUANTILES, "float_list", "levels of the reported singular-value quantiles", lo=0, lo_open=True,
        hi=1, hi_open=True,
    )
    extrapolate_dims: tuple[int, ...] = key(
        (100, 200, 400), "int_list", "extrapolation: twin sizes D (≥ 3 for an error bar on the fit)", lo=4,
    )
    extrapolate_seeds: tuple[int, ...] | None = key(
        None, "int_list", "extrapolation: seeds at each D (default: simulate.seeds × D_max/D)", lo=1,
        optional=True,
    )
