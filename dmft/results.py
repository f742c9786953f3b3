"""One result schema for every family, theory and twin: status, recorded steps, names and metadata.

* **Status** — three variables, one convention (:func:`divergence`, :func:`status_variables`):
  ``diverged`` (bool), ``divergence_step`` (int, the first step whose loss is non-finite or exceeds
  ``solver.divergence_threshold`` times its initial value; **-1 when it did not diverge**) and ``converged``
  (bool: the self-consistency / fixed-point iteration met its tolerance). A twin has them per ``seed``. Values
  after the divergence step are masked to NaN (:func:`mask_after`), never returned silently. :func:`status_text`
  says it in words.
* **Recorded steps** — :func:`record_steps` is the one schedule: 0, k, 2k, … and always the last step T − 1.
* **Names** — every variable and coordinate carries ``long_name`` (and ``units`` where they exist), from
  :data:`LONG_NAMES` or the family's own table; :func:`finalize` sets them and the attributes ``dmft_version``,
  ``config_hash``, ``family`` and ``kind``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "NOT_DIVERGED",
    "divergence",
    "mask_after",
    "eos_variables",
    "status_variables",
    "status_text",
    "record_steps",
    "default_every",
    "LONG_NAMES",
    "finalize",
    "config_hash",
    "missing_long_names",
]

#: ``divergence_step`` of a run that did not diverge.
NOT_DIVERGED = -1


# ------------------------------------------------------------------------------------------------------------
# Status
# ------------------------------------------------------------------------------------------------------------


def divergence(losses: Any, threshold: float, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """``(diverged, divergence_step)`` of loss curves along ``axis`` (the step axis).

    A curve diverges at the first step t where ``loss(t)`` is non-finite or ``loss(t) > threshold · loss(0)``
    (with loss(0) floored at 1e-300). ``divergence_step`` is -1 where it never does. Works on NumPy and on
    concrete JAX arrays; several loss arrays can be stacked by the caller (the earliest step wins).
    """
    x = np.moveaxis(np.asarray(losses, dtype=float), axis, -1)
    ref = np.maximum(np.abs(x[..., :1]), 1e-300)
    bad = ~np.isfinite(x) | (np.abs(x) > threshold * ref)
    diverged = bad.any(axis=-1)
    step = np.where(diverged, np.argmax(bad, axis=-1), NOT_DIVERGED)
    return diverged, step.astype(np.int64)


def mask_after(values: Any, divergence_step: Any, t: Any, t_axis: int = -1) -> np.ndarray:
    """``values`` with NaN at every step t > ``divergence_step`` (where ``divergence_step`` ≥ 0).

    ``divergence_step`` broadcasts against ``values`` with the step axis removed; ``t`` holds the step of each
    position along ``t_axis`` (so recorded-step axes such as ``t_spec`` work too).
    """
    v = np.moveaxis(np.array(values, dtype=float), t_axis, -1)
    k = np.asarray(divergence_step)[..., None]
    after = (k >= 0) & (np.asarray(t)[(None,) * (v.ndim - 1)] > k)
    after = np.broadcast_to(after, v.shape) if after.shape != v.shape else after
    v = np.where(after, np.nan, v)
    return np.moveaxis(v, -1, t_axis)


def eos_variables(sharpness: Any, lr: float) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
    """The edge-of-stability variables of a theory's sharpness(t) (dim ``t``, NaN at steps not evaluated):
    ``sharpness``, ``eos_ratio`` = η·sharpness/2, ``eos_step`` (first t with eos_ratio ≥ 1, −1 if none) and
    ``eos_crossed``; sharpness and eos_ratio are NaN at every t > eos_step (no number past the crossing of 2/η)."""
    s = np.asarray(sharpness, dtype=float)
    ratio = lr * s / 2
    crossed = np.flatnonzero(ratio >= 1)
    k = int(crossed[0]) if crossed.size else NOT_DIVERGED
    t = np.arange(s.shape[0])
    return {"sharpness": (("t",), mask_after(s, k, t)), "eos_ratio": (("t",), mask_after(ratio, k, t)),
            "eos_step": ((), np.asarray(k)), "eos_crossed": ((), np.asarray(k >= 0))}


def status_variables(
    diverged: Any, divergence_step: Any, converged: Any = True, dims: tuple[str, ...] = ()
) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
    """The three status variables as ``{name: (dims, values)}``, ready for ``Dataset.assign``."""
    d = np.asarray(diverged, dtype=bool)
    k = np.where(d, np.asarray(divergence_step, dtype=np.int64), NOT_DIVERGED)
    c = np.broadcast_to(np.asarray(converged, dtype=bool), d.shape) if d.ndim else np.asarray(converged, bool)
    return {"diverged": (dims, d), "divergence_step": (dims, k), "converged": (dims, np.asarray(c, dtype=bool))}


def status_text(ds: Any) -> str:
    """``"converged"``, ``"diverged at step 12"`` (twin: ``"2 of 4 seeds diverged (first at step 12)"``) or
    ``"not converged"`` — one phrase for summaries, warnings and figure titles."""
    parts = []
    if "diverged" in ds and bool(np.any(ds["diverged"].values)):
        d = np.asarray(ds["diverged"].values, dtype=bool)
        k = np.asarray(ds["divergence_step"].values)[d] if "divergence_step" in ds else np.array([])
        first = f" at step {int(k.min())}" if k.size else ""
        if d.ndim and d.size > 1:
            what = "seeds" if "seed" in ds["diverged"].dims else "points"
            parts.append(f"{int(d.sum())} of {d.size} {what} diverged" + (f" (first{first})" if first else ""))
        else:
            parts.append("diverged" + first)
    if "converged" in ds and not bool(np.all(ds["converged"].values)):
        c = np.asarray(ds["converged"].values, dtype=bool)
        parts.append("not converged" if c.size == 1 else f"{int((~c).sum())} of {c.size} not converged")
    return ", ".join(parts) if parts else "converged"


# ------------------------------------------------------------------------------------------------------------
# Recorded steps
# ------------------------------------------------------------------------------------------------------------


def default_every(steps: int, count: int = 5) -> int:
    """The stride that records about ``count`` + 1 states in ``steps`` steps (at least 1)."""
    return max(1, (steps - 1) // max(count, 1)) if steps > 1 else 1


def record_steps(steps: int, every: int | None = None, count: int = 5, extra: Any = ()) -> np.ndarray:
    """The recorded steps of a run of ``steps`` states (t = 0 … steps − 1): 0, k, 2k, … plus the last step.

    ``every`` = k (default :func:`default_every` of ``count``); ``extra`` steps (< steps) are merged in.
    Always sorted, unique, starting at 0 and ending at ``steps - 1``.
    """
    if steps < 1:
        raise ValueError(f"steps = {steps}: must be >= 1")
    k = default_every(steps, count) if every is None else int(every)
    if k < 1:
        raise ValueError(f"every = {every}: must be >= 1")
    out = set(range(0, steps, k)) | {steps - 1}
    out |= {int(e) for e in np.atleast_1d(np.asarray(extra, dtype=int)) if 0 <= int(e) < steps}
    return np.array(sorted(out), dtype=np.int64)


# ------------------------------------------------------------------------------------------------------------
# Names and metadata
# ------------------------------------------------------------------------------------------------------------

#: Long names (and units) of the variables and coordinates shared by several families.
LONG_NAMES: dict[str, str | tuple[str, str]] = {
    "t": ("training step", "steps"),
    "t_spec": ("training step of a recorded spectrum", "steps"),
    "seed": "independent network (twin seed)",
    "layer": "weight matrix index ℓ",
    "k": "outlier rank (0: largest)",
    "i": "singular-value index",
    "s": "earlier time s of a two-time function",
    "train_loss": "train loss",
    "test_loss": "test loss",
    "diverged": "diverged: a loss became non-finite or exceeded the divergence threshold",
    "divergence_step": "first diverged step (-1: did not diverge)",
    "converged": "self-consistency iteration met its tolerance",
    "residual": "self-consistency residual",
    "spectrum": "singular values of the weight matrix (twin)",
    "outlier_sv": "outlier singular values (NaN: no outlier or step not evaluated)",
    "outlier_evaluated": "level 2 evaluated at this step",
    "bulk_edge": "bulk edge of the singular-value law",
    "escape_step": "first step with an outlier above the bulk edge (-1: none)",
    "n_outliers": "number of outliers above the bulk edge",
    "gram_consistency": "ΦᵀZ = (GᵀY)ᵀ identity error of the level-2 Grams",
    "outliers_converged": "level-2 root finder converged",
    "sharpness": "λ_max of the tangent kernel",
    "eos_ratio": "edge-of-stability ratio η·sharpness/2 (linear instability at 1)",
    "eos_step": "first step with η·sharpness ≥ 2 (-1: none); later sharpness and kernel values are NaN",
    "eos_crossed": "the theory's sharpness reached 2/η",
    "top_sv": "largest singular values of the weight matrix (twin)",
    "mc_error": "Monte Carlo error estimate",
}


def config_hash(config_toml: str) -> str:
    """A short stable hash of a config's TOML text."""
    return hashlib.sha1(config_toml.encode()).hexdigest()[:16]


def _set_names(var: Any, entry: str | tuple[str, str]) -> None:
    if "long_name" not in var.attrs:
        name, units = (entry, None) if isinstance(entry, str) else entry
        var.attrs["long_name"] = name
        if units is not None and "units" not in var.attrs:
            var.attrs["units"] = units


def finalize(ds: Any, extra_names: Mapping[str, str | tuple[str, str]] | None = None) -> Any:
    """Set ``long_name`` (and ``units``) on every variable and coordinate that has a known name; the library
    version and, when the config is attached, its hash. Returns a new Dataset."""
    from . import __version__

    table = {**LONG_NAMES, **(extra_names or {})}
    ds = ds.copy()
    for name in list(ds.variables):
        base = name[4:] if name.startswith("sim_") else name
        if base in table:
            _set_names(ds[name] if name in ds.data_vars else ds.coords[name], table[base])
    ds.attrs["dmft_version"] = __version__
    if "config_toml" in ds.attrs:
        ds.attrs["config_hash"] = config_hash(ds.attrs["config_toml"])
    return ds


def missing_long_names(ds: Any) -> list[str]:
    """Variables and coordinates of ``ds`` without a ``long_name`` (the contract test wants none)."""
    return [str(n) for n in ds.variables if "long_name" not in ds.variables[n].attrs]
