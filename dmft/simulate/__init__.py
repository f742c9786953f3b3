"""Finite-width twins: the same network, data and optimizer as the theory, trained at finite size (JAX + optax).

Each module ``dmft.simulate.<family>`` provides ``simulate_config(cfg) -> xarray.Dataset`` with the theory's
variable names plus a ``seed`` dimension. The package itself is callable: ``dmft.simulate(cfg)`` runs the twin of
``cfg``'s family (same as :func:`dmft.api.simulate`), so importing a submodule never hides the API function.
"""

import sys as _sys
import types as _types
from typing import Any


class _CallableModule(_types.ModuleType):
    def __call__(self, cfg: Any, progress: bool = False) -> Any:
        from ..api import simulate

        return simulate(cfg, progress=progress)


_sys.modules[__name__].__class__ = _CallableModule
