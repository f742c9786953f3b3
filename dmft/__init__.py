"""dmft: dynamical mean-field theory of neural-network training and weight spectra, with finite-width twins.

Importing :mod:`dmft` is light: JAX and the solvers load on first use.

>>> import dmft
>>> cfg = dmft.load_config("configs/deep_linear_mup.toml", overrides={"model.width_ratio": 4})
>>> res = dmft.solve(cfg)      # theory, an xarray.Dataset
>>> sim = dmft.simulate(cfg)   # finite-width twin, same variable names
>>> grid = dmft.sweep(cfg)     # the [sweep] grid, one Dataset with the sweep axes as dims
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .config import Config as Config
from .config import ConfigError as ConfigError
from .config import load_config as load_config

__version__ = "0.1.0"

_LAZY = {
    "solve": "dmft.api",
    "simulate": "dmft.api",
    "sweep": "dmft.sweep",
    "compare": "dmft.api",
    "citation": "dmft.api",
    "save_dataset": "dmft.io",
    "load_dataset": "dmft.io",
    "config_of": "dmft.io",
    "families": "dmft.families",
    "spectra": "dmft.spectra",
    "scaling": "dmft.scaling",
    "plot": "dmft.plot",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = import_module(_LAZY[name])
        value = module if _LAZY[name].endswith(name) else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dmft' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
