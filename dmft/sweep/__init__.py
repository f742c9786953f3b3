"""Sweeps: grids of configs, computed on every local device, a Ray cluster or a job array, resumable.

``dmft.sweep(cfg, ...)`` (this package is callable) and :func:`dmft.api.sweep` are :func:`.executors.sweep`.

* :mod:`.points` — the point store: one file per finished point, versioned, locked, atomic (:class:`PointStore`);
* :mod:`.executors` — local (vmapped batches over all devices), Ray, ``shard=(i, n)``, :func:`merge`;
* :mod:`.sharding` — devices and batch sizes;
* :mod:`.cache` — JAX's persistent compilation cache (the CLI and sweeps turn it on; ``import dmft`` does not);
* :mod:`.grid` — grid points, vmappable groups, assembly of one Dataset.

Importing this package loads neither JAX nor xarray.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from .executors import EXECUTORS as EXECUTORS
from .executors import KINDS as KINDS
from .executors import complete_kinds as complete_kinds
from .executors import merge as merge
from .executors import parse_shard as parse_shard
from .executors import sweep as sweep
from .points import PointStore as PointStore
from .points import SweepLocked as SweepLocked
from .points import code_hash as code_hash
from .points import point_key as point_key

__all__ = ["sweep", "merge", "complete_kinds", "parse_shard", "point_key", "code_hash", "PointStore",
           "SweepLocked", "EXECUTORS", "KINDS"]


class _CallableModule(types.ModuleType):
    """``dmft.sweep`` is both this package and the function: ``dmft.sweep(cfg)`` runs a sweep."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return sweep(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
