"""The user's surface: ``solve``, ``simulate``, ``compare``, ``sweep`` for any model family."""

from __future__ import annotations

import dataclasses

import xarray as xr

from .config import Config
from .families import get_family
from .io import attach_config
from .results import finalize
from .sweep import EXECUTORS as EXECUTORS
from .sweep import point_key as point_key
from .sweep import sweep as sweep
from .sweep.grid import axis_name as _axis_name  # noqa: F401 - used by the CLI's sweep summary

__all__ = ["solve", "simulate", "compare", "sweep", "citation", "point_key"]


def _plain(cfg: Config) -> Config:
    return dataclasses.replace(cfg, sweep=()) if cfg.sweep else cfg


def solve(cfg: Config) -> xr.Dataset:
    """The theory prediction for one config (its ``[sweep]`` table, if any, is ignored: see :func:`sweep`)."""
    from ._jax import float64

    cfg = _plain(cfg)
    family = get_family(cfg.model.family)
    with float64():
        ds = family.solve(cfg)
    ds.attrs["kind"] = "theory"
    return finalize(attach_config(ds, cfg), family.long_names)


def simulate(cfg: Config, progress: bool = False) -> xr.Dataset:
    """The finite-width twin for one config: the theory's variables plus a ``seed`` dimension."""
    from ._jax import float64

    cfg = _plain(cfg)
    family = get_family(cfg.model.family)
    with float64():
        ds = family.simulate(cfg, progress)
    ds.attrs["kind"] = "simulation"
    return finalize(attach_config(ds, cfg), family.long_names)


def compare(cfg: Config, progress: bool = False) -> tuple[xr.Dataset, xr.Dataset]:
    """Theory and twin for the same config."""
    return solve(cfg), simulate(cfg, progress=progress)


# --------------------------------------------------------------------------------------------------------------
# Sweeps: the engine is the package dmft.sweep (point store, executors, devices, compilation cache)
# --------------------------------------------------------------------------------------------------------------

# ``sweep``, ``point_key`` and ``EXECUTORS`` are imported from there at the top of this module.


# --------------------------------------------------------------------------------------------------------------
# Citation
# --------------------------------------------------------------------------------------------------------------

_PAPERS = {
    "2605.07870": "Lauditi, Pehlevan, Bordelon. Spectral dynamics in deep networks: two-level DMFT (arXiv:2605.07870)",
    "2502.02531": "Bordelon, Pehlevan. Deep linear network training dynamics from random initialization "
    "(arXiv:2502.02531)",
    "2205.09653": "Bordelon, Pehlevan. Self-consistent dynamical field theory of kernel evolution in wide neural "
    "networks (arXiv:2205.09653)",
    "2510.01930": "Nishiyama, Imaizumi. Precise dynamics of diagonal linear networks (arXiv:2510.01930)",
    "2507.12709": "Olsen et al. From SGD to spectra: Dyson Brownian motion of singular values (arXiv:2507.12709)",
    "2509.01349": "Park, Lucini, Aarts. Phase diagram and eigenvalue dynamics of SGD (arXiv:2509.01349)",
}
def citation(family: str | Config = "deep_linear") -> str:
    """The papers behind a model family (or a config's family), one per line."""
    if isinstance(family, Config):
        family = family.model.family
    return "\n".join(_PAPERS.get(k, f"arXiv:{k}") for k in get_family(family).papers)
