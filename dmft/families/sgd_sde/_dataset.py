"""From a config and ensemble records to an xarray Dataset: shared by the SDE forecast and the SGD twin.

Dims: ``t`` (recorded step index, with coordinate ``tau`` = η t), ``i`` (singular value, descending), and the
ensemble dim (``member`` for the SDE, ``seed`` for SGD). Variables: ``sv``, ``sum_sq``,
``train_loss``/``test_loss`` where the loss model has them, ``diffusion0`` (𝒟 at W(0)), ``diverged``,
``teacher_sv`` (the teacher's singular values, per run) for ``teacher`` and ``phase_teacher``; for
``phase_teacher`` the criterion, observables and phase of every run plus ``p_ordered`` and ``phase_fraction``;
and the closed-form laws that apply.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import xarray as xr

from ...config import Config, ConfigError
from . import _phase, _stationary

__all__ = ["record_schedule", "check_config", "build_dataset", "hyper_values"]


def check_config(cfg: Config) -> None:
    """Cross-key rules of the family (one-line :class:`ConfigError`)."""
    if cfg.solver.level == "singular_values" and cfg.model.drift == "phase_teacher":
        raise ConfigError(
            "solver.level = 'singular_values': no closure for model.drift = 'phase_teacher'; use 'matrix'"
        )
    if cfg.model.drift == "phase_teacher" and cfg.optim.batch_size > cfg.data.samples:
        raise ConfigError(
            f"optim.batch_size = {cfg.optim.batch_size}: must be <= data.samples = {cfg.data.samples}"
        )
    if cfg.model.drift == "phase_teacher" and min(cfg.model.rows, cfg.model.cols) < 3:
        raise ConfigError(f"model.rows = {cfg.model.rows}: phase_teacher needs rows and cols >= 3")
    if cfg.optim.steps < 2:
        raise ConfigError(f"optim.steps = {cfg.optim.steps}: sgd_sde needs at least 2 recorded states")


def record_schedule(cfg: Config) -> tuple[int, int]:
    """``(n_records, record_every)``: states t = 0, k, 2k, … ≤ T − 1 (k defaults to about (T − 1)/50)."""
    last = cfg.optim.steps - 1
    every = cfg.solver.record_every or max(1, last // 50)
    every = min(every, last)
    return last // every + 1, every


def hyper_values(cfg: Config) -> dict[str, float]:
    """The vmappable scalars of a config, by :class:`._problem.Hyper` field (plus ``sigma``,
    ``teacher_variance``)."""
    return {
        "lr": cfg.optim.lr,
        "batch_size": float(cfg.optim.batch_size),
        "grad_noise": cfg.optim.grad_noise,
        "weight_decay": cfg.optim.weight_decay,
        "label_noise": cfg.data.noise,
        "sigma": cfg.model.sigma,
        "teacher_variance": cfg.data.teacher_variance,
    }


def _diverged(
    records: dict[str, np.ndarray], diffusion0: np.ndarray, cfg: Config, tau_end: float
) -> np.ndarray:
    """Non-finite records, or |W|² or a loss above ``divergence_threshold`` × its reference value.

    Reference of |W|²: its initial value plus the pure-diffusion growth m n 𝒟(0) τ and the teacher's scale, so
    a noise-driven random walk is not mistaken for divergence.
    """
    thr = cfg.solver.divergence_threshold
    finite = np.ones(diffusion0.shape, bool)
    for v in records.values():
        finite &= np.all(np.isfinite(v.reshape(v.shape[0], -1)), axis=1)
    m, n = cfg.model.rows, cfg.model.cols
    ref = records["sum_sq"][:, 0] + m * n * diffusion0 * tau_end + m * cfg.data.teacher_variance + 1e-300
    with np.errstate(invalid="ignore"):
        bad = np.nanmax(records["sum_sq"], axis=1) > thr * ref
        for name in ("train_loss", "test_loss"):
            if name in records:
                bad |= np.nanmax(records[name], axis=1) > thr * (records[name][:, 0] + 1e-300)
    return ~finite | bad


def _laws(cfg: Config, t: np.ndarray, step: float) -> dict[str, Any]:
    """Closed forms for the run's step h (η/substeps for the SDE, η for SGD): ``mp_init_edge``; for ``noise``
    ``expected_sum_sq`` (exact E|W_t|²), and with weight decay the Laguerre law (``stationary_edge``,
    ``stationary_sum_sq``) and the 1-D gamma law; the provisional gamma-type law; for ``teacher`` without
    weight decay ``expected_test_loss`` (exact for SGD and for the state-noise matrix SDE)."""
    m, n = cfg.model.rows, cfg.model.cols
    lr, b = cfg.optim.lr, cfg.optim.batch_size
    wd = cfg.optim.weight_decay
    sig0 = cfg.model.sigma
    lo, hi = _stationary.mp_sv_edges(m, n, sig0**2 / n)
    out: dict[str, Any] = {"mp_init_edge": (("edge",), np.array([lo, hi]))}
    if cfg.model.drift == "noise":
        diff = lr * cfg.optim.grad_noise**2 / b
        k = t * lr / step
        out["expected_sum_sq"] = (("t",), _stationary.noise_sum_sq(k, m * sig0**2, m, n, diff, wd, step))
        if wd > 0 and diff > 0 and step * wd < 2:  # otherwise the iteration is unstable: no stationary law
            law = _stationary.laguerre_stationary(m, n, diff, wd, step=step)
            out["stationary_edge"] = (("edge",), np.array([law["sv_lo"], law["sv_hi"]]))
            out["stationary_sum_sq"] = ((), law["mean_sum_sq"])
            k1, r1 = _stationary.gamma_1d_law(m, n, diff, wd)
            out["gamma_1d_shape"], out["gamma_1d_rate"] = ((), k1), ((), r1)
        k2, r2 = _stationary.gamma_type_law(m, n, lr)
        out["gamma_type_shape"], out["gamma_type_rate"] = ((), k2), ((), r2)
    if cfg.model.drift == "teacher" and wd == 0:
        err0 = m * (sig0**2 + cfg.data.teacher_variance)
        err = _stationary.sgd_teacher_error(t, err0, m, n, lr, b, cfg.data.noise, cfg.optim.grad_noise, step)
        out["expected_test_loss"] = (("t",), 0.5 * (err + m * cfg.data.noise**2))
    return out


def build_dataset(
    cfg: Config,
    records: dict[str, np.ndarray],
    diffusion0: np.ndarray,
    ens_dim: str,
    step: float,
    extra: dict[str, np.ndarray] | None = None,
) -> xr.Dataset:
    """Assemble the Dataset of one config from per-run ``records`` (leading axes: run, record).

    ``step``: the integration step h (for the closed-form laws). ``extra``: per-run scalars (phase criterion
    and observables for ``phase_teacher``).
    """
    records = {k: np.asarray(v, dtype=float) for k, v in records.items()}
    n_records, every = record_schedule(cfg)
    t = np.arange(n_records) * every
    tau = cfg.optim.lr * t
    runs = records["sv"].shape[0]
    diverged = _diverged(records, np.asarray(diffusion0, float), cfg, float(tau[-1]))
    data: dict[str, Any] = {
        "sv": ((ens_dim, "t", "i"), records["sv"]),
        "sum_sq": ((ens_dim, "t"), records["sum_sq"]),
        "diffusion0": ((ens_dim,), np.asarray(diffusion0, float)),
        "diverged": ((ens_dim,), diverged),
    }
    for name in ("train_loss", "test_loss"):
        if name in records:
            data[name] = ((ens_dim, "t"), records[name])
    extra = {k: np.asarray(v) for k, v in (extra or {}).items()}
    for k, v in extra.items():
        data[k] = ((ens_dim, "i")[: v.ndim], v.astype(bool) if k == "ordered" else v.astype(float))
    if cfg.model.drift == "phase_teacher":
        growth = _phase.spacing_growth(records["sv"], tau)
        data["spacing_growth"] = ((ens_dim,), growth)
        phase = _phase.classify(extra["ordered"], diverged, extra["preact_var"])
        data["phase"] = ((ens_dim,), phase)
        data["p_ordered"] = ((), float(np.mean(phase == 0)))
        data["phase_fraction"] = (("phase_name",), np.bincount(phase, minlength=3) / runs)
        data["theta"] = ((), cfg.optim.lr / cfg.optim.batch_size)
    data.update(_laws(cfg, t, step))
    coords: dict[str, Any] = {
        "t": t,
        "tau": ("t", tau),
        ens_dim: np.arange(runs),
        "i": np.arange(records["sv"].shape[-1]),
    }
    if "edge" in {d for v in data.values() for d in v[0]}:
        coords["edge"] = ["lower", "upper"]
    if "phase_fraction" in data:
        coords["phase_name"] = list(_phase.PHASES)
    ds = xr.Dataset(data, coords=coords)
    ds.attrs.update(
        {"family": "sgd_sde", "drift": cfg.model.drift, "level": cfg.solver.level, "ensemble_dim": ens_dim}
    )
    if diverged.any():
        warnings.warn(
            f"sgd_sde: {int(diverged.sum())} of {runs} runs diverged (see the 'diverged' variable); "
            "lower optim.lr or raise optim.batch_size",
            RuntimeWarning,
            stacklevel=3,
        )
    return ds
