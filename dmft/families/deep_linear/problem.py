"""The deep-linear problem shared by theory and twin: closed-form constants, the recorded spectrum steps and the
names of the result variables.

Only this module, :mod:`dmft.scaling` and :mod:`dmft.results` may be imported by both :mod:`.theory` and
:mod:`.twin`.
"""

from __future__ import annotations

import numpy as np

from ...config import Config
from ...results import record_steps

__all__ = ["lazy_kappa", "spectrum_every", "spectrum_steps", "LONG_NAMES"]

#: Records of the twin's spectra per run by default (``simulate.spectrum_every`` unset): 0, k, …, 4k, T − 1.
SPECTRUM_RECORDS = 4


def lazy_kappa(depth: int, sigma: float, sigma_readout: float) -> float:
    """Lazy tangent-kernel constant κ = Lσ^{2(L−1)}σ_w² + σ^{2L} (deep_linear.md §7.3)."""
    return depth * sigma ** (2 * (depth - 1)) * sigma_readout**2 + sigma ** (2 * depth)


def spectrum_every(cfg: Config) -> int:
    """Stride k of the recorded spectra: ``simulate.spectrum_every``, default (T − 1)//4 (at least 1)."""
    steps = cfg.optim.steps
    return cfg.simulate.spectrum_every or max(1, (steps - 1) // SPECTRUM_RECORDS)


def spectrum_steps(cfg: Config) -> np.ndarray:
    """The one schedule of recorded spectra (:func:`dmft.results.record_steps`): 0, k, 2k, … and T − 1.

    The twin records its spectra exactly there, and the theory always evaluates level 2 there (among others).
    """
    return record_steps(cfg.optim.steps, spectrum_every(cfg))


#: Long names of the deep-linear result variables and coordinates (theory and twin), on top of
#: :data:`dmft.results.LONG_NAMES`.
LONG_NAMES: dict[str, str | tuple[str, str]] = {
    "space": "N-space (hidden layer) ℓ of a layered two-time function",
    "C_beta": "C_β̃(t,s) = β̃(t)·β̃(s)/D, predictor-error correlation",
    "C_delta": "C_Δ(t,s) = Δ(t)·Δ(s)/P, residual correlation",
    "C_q": "C_q(t,s) = q̂(t)·q̂(s)/D, gradient-signal correlation",
    "R": "R(t,s) = ⟨∂β(t)/∂ρ(s)⟩, data response",
    "H": "H = (I + R)⁻¹, residual resolvent",
    "J": "J = (I + P_0H)⁻¹",
    "P0": "P_0 = B_1/(γ0ν) + η SL∘C_g^1, D-space spike operator",
    "A_0": "A_0 = σ²⟨∂q̂/∂r⁰⟩, first-layer forward response",
    "C_g": "C_g^ℓ(t,s) = g^ℓ(t)·g^ℓ(s)/N, backward-field correlation",
    "C_e": "C_e^ℓ(t,s) = e^ℓ(t)·e^ℓ(s)/N, forward-field correlation",
    "A": "A_ℓ = σ²𝔽_ℓP_ℓ, forward response",
    "B": "B_ℓ = σ²c_ℓ𝕄_ℓQ_ℓ, backward response",
    "P": "P_ℓ = A_{ℓ−1} + ηγ0 SL∘C_in^ℓ, forward spike operator",
    "Q": "Q_ℓ = B_{ℓ+1} + ηγ0 SL∘C_g^{ℓ+1}, backward spike operator",
    "M": "𝕄_ℓ = (I − Q_ℓP_ℓ)⁻¹, backward resolvent",
    "F": "𝔽_ℓ = (I − P_ℓQ_ℓ)⁻¹, forward resolvent",
    "sharpness": "λ_max of the tangent kernel K̃ = γ0²N JJᵀ/P (twin)",
}
