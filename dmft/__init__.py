"""dmft: dynamical mean-field theory of neural-network training and weight spectra, with finite-width twins.

Importing :mod:`dmft` is light: JAX and the solvers load on first use.

>>> import dmft
>>> cfg = dmft.load_config("configs/deep_linear_mup.toml", overrides={"model.width_ratio": 4})
>>> res = dmft.solve(cfg)      # theory, an xarray.Dataset
>>> sim = dmft.simulate(cfg)   # finite-width twin, same variable names
>>> grid = dmft.sweep(cfg)     # the [sweep] grid, one Dataset with the sweep axes as dims
"""

from __future__ import annotations

import os

# One OpenBLAS thread unless the user chose otherwise: jaxlib's CPU LAPACK kernels (SciPy's OpenBLAS) run many
# small factorizations (level-2 root finding, twin spectra), and OpenBLAS threads competing with XLA's own pool made
# them up to ~100× slower on a 2-core machine (T = 200 level 2: 96 s -> 12 s). Effective for BLAS libraries loaded
# after `import dmft`; set OPENBLAS_NUM_THREADS yourself to override.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from importlib import import_module  # noqa: E402
from typing import Any

from .config import Config as Config
from .config import ConfigError as ConfigError
from .config import load_config as load_config

__version__ = "0.1.0"

_LAZY = {
    "solve": "dmft.api",
    "simulate": "dmft.simulate",  # a callable package: dmft.simulate(cfg) runs the twin
    "sweep": "dmft.api",
    "compare": "dmft.api",
    "citation": "dmft.api",
    "save_dataset": "dmft.io",
    "load_dataset": "dmft.io",
    "config_of": "dmft.io",
    "models": "dmft.models",
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
