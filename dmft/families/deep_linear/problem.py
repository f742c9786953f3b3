"""The deep-linear problem shared by theory and twin: closed-form constants and the recorded spectrum steps.

Only this module and :mod:`dmft.scaling` may be imported by both :mod:`.theory` and :mod:`.twin`.
"""

from __future__ import annotations

import numpy as np

from ...config import Config

__all__ = ["lazy_kappa", "spectrum_every", "spectrum_steps"]


def lazy_kappa(depth: int, sigma: float, sigma_readout: float) -> float:
    """Lazy tangent-kernel constant κ = Lσ^{2(L−1)}σ_w² + σ^{2L} (deep_linear.md §7.3)."""
    return depth * sigma ** (2 * (depth - 1)) * sigma_readout**2 + sigma ** (2 * depth)


def spectrum_every(cfg: Config) -> int:
    """Stride k of the recorded spectra: ``simulate.spectrum_every``, default about 5 records per run."""
    return cfg.simulate.spectrum_every or max(1, (cfg.optim.steps - 1) // 4)


def spectrum_steps(cfg: Config) -> np.ndarray:
    """Steps at which the twin records spectra (and level 2 is always evaluated): 0, k, …, and T − 1."""
    steps, every = cfg.optim.steps, spectrum_every(cfg)
    n_seg = (steps - 1) // every
    return np.concatenate([np.arange(n_seg) * every, [steps - 1]]).astype(int)
