"""Model families. Each module ``dmft.models.<family>`` provides

* ``solve_config(cfg) -> xarray.Dataset``: the theory for one config;
* optionally ``solve_batch(cfgs) -> list[xarray.Dataset]``: configs that differ only in vmappable keys, solved
  under one compile (used by sweeps);
* array-level solvers that can be called, vmapped and differentiated directly.

The finite-width twin of each family lives in ``dmft.simulate.<family>`` with ``simulate_config(cfg)``.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

from ..config import FAMILIES, ConfigError

__all__ = ["family_module"]


def family_module(family: str, kind: str = "models") -> ModuleType:
    """The module implementing ``family`` (``kind`` = "models" for theory, "simulate" for the twin)."""
    if family not in FAMILIES:
        raise ConfigError(f"model.family = {family!r}: must be one of {', '.join(FAMILIES)}")
    try:
        return import_module(f"dmft.{kind}.{family}")
    except ModuleNotFoundError as e:
        if e.name == f"dmft.{kind}.{family}":
            what = "theory solver" if kind == "models" else "finite-width twin"
            raise ConfigError(f"model.family = {family!r}: no {what} is implemented yet") from None
        raise
