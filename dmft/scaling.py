"""μP / NTK rules: the one place where width enters γ0, the learning rate and the initialisation.

Conventions (shared/theory/conventions.md §3): every parameter is updated as θ ← θ − η γ0² N ∂L/∂θ; under μP the
config's ``gamma0`` is γ0 itself, under NTK it is γ̃0 and γ0 = γ̃0/√(width), where the width is the one that
enters the family's NTK scaling: the width ratio ν = N/D of the proportional families, the hidden width N of the
mean-field family (conventions.md §4). Both the DMFT solvers and the finite-width twins call these functions, so
theory and simulation cannot disagree about scaling.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jaxtyping import ArrayLike

__all__ = ["effective_gamma0", "applied_lr", "PARAMETERIZATIONS", "parameterization_code"]

PARAMETERIZATIONS = ("mup", "ntk")


def parameterization_code(name: str) -> float:
    """0.0 for μP, 1.0 for NTK: a number, so that a sweep over parameterizations can be vmapped."""
    return float(PARAMETERIZATIONS.index(name))


def effective_gamma0(gamma0: ArrayLike, width: ArrayLike, ntk: ArrayLike | str) -> ArrayLike:
    """γ0 actually used by the network: γ0 under μP (ntk = 0), γ̃0/√width under NTK (ntk = 1).

    ``width`` is ν = N/D for the proportional families (deep_linear, extensive_output) and the hidden width N for
    mean_field. ``ntk`` is ``"mup"``/``"ntk"`` or a 0/1 number that may be traced, so that μP and NTK share one
    compiled solver. Python numbers in, a Python float out.
    """
    if isinstance(ntk, str):
        ntk = parameterization_code(ntk)
    if all(isinstance(x, int | float) for x in (gamma0, width, ntk)):
        return gamma0 / math.sqrt(width) if ntk else gamma0
    return gamma0 * jnp.where(jnp.asarray(ntk) > 0.5, 1.0 / jnp.sqrt(width), 1.0)


def applied_lr(lr: ArrayLike, gamma0_eff: ArrayLike, width: ArrayLike) -> ArrayLike:
    """Raw SGD step size on every parameter of a width-N network: η γ0² N."""
    return lr * gamma0_eff**2 * width
