"""μP / NTK rules: the one place where width enters γ0, the learning rate and the initialisation.

Conventions (shared/theory/conventions.md §3): every parameter is updated as θ ← θ − η γ0² N ∂L/∂θ; under μP the
config's ``gamma0`` is γ0 itself, under NTK it is γ̃0 and γ0 = γ̃0/√ν. Both the DMFT solvers and the finite-width
twins call these functions, so theory and simulation cannot disagree about scaling.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jaxtyping import ArrayLike

__all__ = [
    "effective_gamma0", "mean_field_gamma0", "applied_lr", "readout_multiplier", "PARAMETERIZATIONS",
    "parameterization_code",
]

PARAMETERIZATIONS = ("mup", "ntk")


def parameterization_code(name: str) -> float:
    """0.0 for μP, 1.0 for NTK: a number, so that a sweep over parameterizations can be vmapped."""
    return float(PARAMETERIZATIONS.index(name))


def effective_gamma0(gamma0: ArrayLike, width_ratio: ArrayLike, ntk: ArrayLike) -> ArrayLike:
    """γ0 actually used by the network: γ0 under μP (ntk = 0), γ̃0/√ν under NTK (ntk = 1).

    ``ntk`` may be a traced 0/1 value so that μP and NTK share one compiled solver.
    """
    if isinstance(ntk, str):
        ntk = parameterization_code(ntk)
    if all(isinstance(x, int | float) for x in (gamma0, width_ratio, ntk)):
        return gamma0 / math.sqrt(width_ratio) if ntk else gamma0
    return gamma0 * jnp.where(ntk > 0.5, 1.0 / jnp.sqrt(width_ratio), 1.0)


def mean_field_gamma0(gamma0: ArrayLike, width: ArrayLike, ntk: ArrayLike) -> ArrayLike:
    """γ0 of the mean-field family (finite data, width N): γ0 under μP, γ̃0/√N under NTK (conventions.md §4).

    The NTK theory at the twin's width N uses this γ0; as N → ∞ it tends to the lazy (static-NTK) limit.
    """
    if isinstance(ntk, str):
        ntk = parameterization_code(ntk)
    if all(isinstance(x, int | float) for x in (gamma0, width, ntk)):
        return gamma0 / math.sqrt(width) if ntk else gamma0
    return gamma0 * jnp.where(ntk > 0.5, 1.0 / jnp.sqrt(width), 1.0)


def applied_lr(lr: ArrayLike, gamma0_eff: ArrayLike, width: ArrayLike) -> ArrayLike:
    """Raw SGD step size on every parameter of a width-N network: η γ0² N."""
    return lr * gamma0_eff**2 * width


def readout_multiplier(gamma0_eff: ArrayLike, width: ArrayLike, dim: ArrayLike) -> ArrayLike:
    """The factor √D/(γ0 N) in f(x) = √D w·h^L/(γ0 N) (proportional deep linear network)."""
    return jnp.sqrt(dim) / (gamma0_eff * width)
