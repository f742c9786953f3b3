r"""Finite-size extrapolation of the twin to D = ∞ (extensive_outputs.md §7): a reference with an error bar where
no exact theory exists (full GD at finite ν), and a measure of how far a finite network sits from its limit.

The twin runs at several D (same ν, κ, α); each observable's seed mean ȳ(D) ± sem(D) is fitted by weighted least
squares to

    ȳ(D) = y∞ + c·D^{−p},    p = 2/3 for the top edge (edge scaling), p = 1 for bulk quantiles and losses,

and y∞ is reported with its one-standard-error from the fit covariance (XᵀWX)⁻¹, W = diag(1/sem²), inflated by
the reduced χ² when that exceeds 1 (with more than two sizes). This is a simulation reference, not a theory.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .problem import params_from_config, sizes_from_config, sv_scale
from .twin import simulate_sizes, spectrum_steps

__all__ = ["extrapolate", "fit_power", "EDGE_EXPONENT", "BULK_EXPONENT"]

EDGE_EXPONENT = 2.0 / 3.0
BULK_EXPONENT = 1.0


def fit_power(dims: Any, mean: np.ndarray, sem: np.ndarray, p: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted fit of mean[i, ...] = y∞ + c·dims[i]^{−p} along axis 0; returns (y∞, its std error, c).

    ``sem`` of zero (a single seed) falls back to equal weights with the residual scatter as the error."""
    x = np.asarray(dims, dtype=float) ** (-p)
    x = x.reshape((-1,) + (1,) * (mean.ndim - 1))
    scale = np.nanmax(np.abs(mean), axis=0, keepdims=True) + 1e-300
    sem_ok = np.all(sem > 1e-14 * scale, axis=0, keepdims=True)
    w = np.where(sem_ok, 1.0 / np.maximum(sem, 1e-300) ** 2, 1.0)
    sw, sx, sxx = w.sum(0), (w * x).sum(0), (w * x * x).sum(0)
    sy, sxy = (w * mean).sum(0), (w * x * mean).sum(0)
    det = sw * sxx - sx**2
    c = (sw * sxy - sx * sy) / det
    y0 = (sxx * sy - sx * sxy) / det
    n = mean.shape[0]
    resid = mean - (y0[None] + c[None] * x)
    chi2 = (w * resid**2).sum(0)
    var = sxx / det
    if n > 2:
        red = chi2 / (n - 2)
        var = np.where(sem_ok[0], var * np.maximum(1.0, red), var * red)
    return y0, np.sqrt(var), c


def extrapolate(cfg: Any, dims: Any = None, seeds: Any = None, section: Any = None) -> Any:
    """Run the twin of ``cfg`` at each D in ``dims`` (default ``extensive_output.extrapolate_dims``) with
    ``seeds`` networks each (default ``extensive_output.extrapolate_seeds``, else simulate.seeds × D_max/D), and
    fit every observable to D = ∞ (module docstring). Returns a Dataset with the theory's names (``edge``,
    ``quantiles``, ``test_loss``, ``train_loss``) plus ``*_err``, the per-size seed means ``*_by_dim`` and the
    standard errors of the edge and quantile means ``*_sem_by_dim``."""
    import xarray as xr

    from dmft.results import finalize, status_variables

    from . import FAMILY

    prob = params_from_config(cfg, section)
    sec = prob.section
    dims = [int(d) for d in (sec.extrapolate_dims if dims is None else dims)]
    if len(set(dims)) < 2:
        raise ValueError(f"dims = {dims}: need at least 2 distinct sizes")
    if seeds is None:
        seeds = sec.extrapolate_seeds or [max(2, math.ceil(prob.seeds * max(dims) / d)) for d in dims]
    seeds = [int(s) for s in seeds]
    levels = np.asarray(sec.quantiles, dtype=float)
    scale = sv_scale(sec.units, prob.hyper.nu)
    rec = spectrum_steps(prob.steps, prob.every)
    stats: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"edge": [], "quantiles": [], "test_loss": [],
                                                            "train_loss": []}
    diverged = False
    for d, s in zip(dims, seeds, strict=True):
        res = simulate_sizes(prob, d, s)
        sv = scale * res["spectrum"]
        obs = {"edge": sv[..., 0], "quantiles": np.moveaxis(np.quantile(sv, levels, axis=-1), 0, -1),
               "test_loss": res["test_loss"], "train_loss": res["train_loss"]}
        for k, v in obs.items():
            diverged |= not np.all(np.isfinite(v))
            sem = v.std(0, ddof=1) / np.sqrt(v.shape[0]) if v.shape[0] > 1 else np.zeros(v.shape[1:])
            stats[k].append((v.mean(0), sem))
    out: dict[str, Any] = {}
    for k, vals in stats.items():
        mean = np.stack([m for m, _ in vals])
        sem = np.stack([e for _, e in vals])
        p = EDGE_EXPONENT if k == "edge" else BULK_EXPONENT
        y0, err, _ = fit_power(dims, mean, sem, p)
        out[k], out[k + "_err"], out[k + "_by_dim"], out[k + "_sem_by_dim"] = y0, err, mean, sem
    ds = xr.Dataset(
        {
            "edge": ("t_spec", out["edge"]),
            "edge_err": ("t_spec", out["edge_err"]),
            "quantiles": (("t_spec", "q"), out["quantiles"]),
            "quantiles_err": (("t_spec", "q"), out["quantiles_err"]),
            "test_loss": ("t", out["test_loss"]),
            "test_loss_err": ("t", out["test_loss_err"]),
            "train_loss": ("t", out["train_loss"]),
            "train_loss_err": ("t", out["train_loss_err"]),
            "edge_by_dim": (("dim", "t_spec"), out["edge_by_dim"]),
            "quantiles_by_dim": (("dim", "t_spec", "q"), out["quantiles_by_dim"]),
            "test_loss_by_dim": (("dim", "t"), out["test_loss_by_dim"]),
            "edge_sem_by_dim": (("dim", "t_spec"), out["edge_sem_by_dim"]),
            "quantiles_sem_by_dim": (("dim", "t_spec", "q"), out["quantiles_sem_by_dim"]),
            **status_variables(diverged, -1, True),
        },
        coords={"t": np.arange(prob.steps), "t_spec": rec, "q": levels, "dim": dims},
        attrs={"family": "extensive_output", "kind": "theory", "solver": "extrapolate", "units": sec.units,
               "readout": sec.readout, "limit": "D=inf (fit of the twin)", "seeds": seeds,
               "widths": [sizes_from_config(prob, d).width for d in dims],
               "note": "no exact theory: twin at several D fitted to D = ∞ (edge ∝ D^-2/3, bulk and losses ∝ 1/D)"},
    )
    return finalize(ds, FAMILY.long_names)
