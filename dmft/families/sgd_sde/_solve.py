"""The SDE forecast for configs: an ensemble of matrix (or singular-value) SDE runs, vmapped, under one compile.

``solve_config(cfg)`` integrates ``solver.ensemble`` members; member i starts from the same instance as SGD
seed i of the twin (:func:`.problem.problem_key`) with independent noise. ``seed`` is traced: a new seed does not
recompile. ``solve_batch(cfgs)`` vmaps configs that differ only in vmappable keys (lr, sigma, grad_noise,
weight_decay, noise, teacher_variance, and the seed) over one compiled function. The level (``solver.level``) is
a strategy (:data:`LEVELS`) chosen once; the closed-form laws (:func:`laws`) are added to the theory's Dataset.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jaxtyping import Array

from solvers.linalg import svdvals

from ..._jax import require_x64
from ...config import Config
from . import _stationary
from ._matrix import integrate_matrix_sde
from ._singular import integrate_sv_sde
from .problem import (
    Hyper,
    Problem,
    check_config,
    diffusion_coefficient,
    drift_of,
    final_observables,
    hyper_from_values,
    hyper_values,
    member_problem,
    noise_key,
    records_dataset,
    schedule,
)

__all__ = ["solve_config", "solve_batch", "sde_ensemble", "laws", "LEVELS", "DRIFT_LAWS"]


def _matrix_member(key: Array, prob: Problem, hyper: Hyper, values: dict[str, Array], *, drift: str,
                   beta: float, pair: bool, **kw: Any) -> tuple[dict[str, Array], dict[str, Array]]:
    rec, w_final = integrate_matrix_sde(key, prob, hyper, drift=drift, **kw)
    return rec, final_observables(drift, prob, w_final, hyper, values["sigma"])


def _sv_member(key: Array, prob: Problem, hyper: Hyper, values: dict[str, Array], *, drift: str, beta: float,
               pair: bool, **kw: Any) -> tuple[dict[str, Array], dict[str, Array]]:
    s_star = svdvals(prob.w_star) if drift_of(drift).has_teacher else None
    rows, cols = prob.w0.shape
    rec, _ = integrate_sv_sde(key, svdvals(prob.w0), s_star, hyper, drift=drift, rows=rows, cols=cols, beta=beta,
                              pair=pair, **kw)
    return rec, {} if s_star is None else {"teacher_sv": s_star}


#: ``solver.level`` → one member's integration: ``(key, problem, hyper, values, **static) -> (records, extra)``.
LEVELS: dict[str, Callable[..., tuple[dict[str, Array], dict[str, Array]]]] = {
    "matrix": _matrix_member,
    "singular_values": _sv_member,
}


@partial(
    jax.jit,
    static_argnames=(
        "drift", "level", "rows", "cols", "samples", "ensemble", "n_records", "record_every", "substeps",
        "noise_model", "beta", "pair", "tail",
    ),
)
def sde_ensemble(
    values: dict[str, Array],
    seed: int | Array = 0,
    *,
    drift: str,
    level: str,
    rows: int,
    cols: int,
    samples: int,
    ensemble: int,
    n_records: int,
    record_every: int,
    substeps: int = 1,
    noise_model: str = "state",
    beta: float = 1.0,
    pair: bool = True,
    tail: int = 0,
) -> tuple[dict[str, Array], Array, dict[str, Array]]:
    """Run ``ensemble`` members of the SDE. ``values``: the scalars of :func:`.problem.hyper_values`; ``seed``:
    the instance seed (traced: any seed, one compile).

    ``beta`` (Dyson index) and ``pair`` (level repulsion on/off) act on the singular-value level only; ``tail``:
    steps after the last of the ``n_records`` regular records, followed by one more record.

    Returns ``(records, diffusion0, extra)``: records with leading axes (member, record); 𝒟 at W(0) per
    member; for ``phase_teacher`` the criterion and observables at the final weights (else empty).
    """
    require_x64("sde_ensemble")
    hyper = hyper_from_values(values)
    run = LEVELS[level]
    kw = dict(drift=drift, n_records=n_records, record_every=record_every, substeps=substeps,
              noise_model=noise_model, tail=tail, beta=beta, pair=pair)

    def member(i: Array) -> tuple[dict[str, Array], Array, dict[str, Array]]:
        prob = member_problem(values, seed, i, drift=drift, rows=rows, cols=cols, samples=samples)
        rec, extra = run(noise_key(seed, i, "sde"), prob, hyper, values, **kw)
        return rec, diffusion_coefficient(drift, prob.w0, prob, hyper), extra

    return jax.vmap(member)(jnp.arange(ensemble))


def _static(cfg: Config) -> dict[str, Any]:
    sch = schedule(cfg)
    if cfg.solver.level not in LEVELS:
        raise ValueError(f"solver.level = {cfg.solver.level!r}: must be one of {', '.join(LEVELS)}")
    return {
        "drift": cfg.model.drift,
        "level": cfg.solver.level,
        "rows": cfg.model.rows,
        "cols": cfg.model.cols,
        "samples": cfg.data.samples,
        "ensemble": cfg.solver.ensemble,
        "n_records": sch.uniform,
        "record_every": sch.every,
        "tail": sch.tail,
        "substeps": cfg.solver.substeps,
        "noise_model": cfg.solver.noise_model,
    }


def _noise_laws(cfg: Config, t: np.ndarray, step: float) -> dict[str, Any]:
    m, n = cfg.model.rows, cfg.model.cols
    lr, b, wd, sig0 = cfg.optim.lr, cfg.optim.batch_size, cfg.optim.weight_decay, cfg.model.sigma
    diff = lr * cfg.optim.grad_noise**2 / b
    out: dict[str, Any] = {
        "expected_sum_sq": (("t",), _stationary.noise_sum_sq(t * lr / step, m * sig0**2, m, n, diff, wd, step))
    }
    if wd > 0 and diff > 0 and step * wd < 2:  # otherwise the iteration is unstable: no stationary law
        law = _stationary.laguerre_stationary(m, n, diff, wd, step=step)
        out["stationary_edge"] = (("edge",), np.array([law["sv_lo"], law["sv_hi"]]))
        out["stationary_sum_sq"] = ((), law["mean_sum_sq"])
        k1, r1 = _stationary.gamma_1d_law(m, n, diff, wd)
        out["gamma_1d_shape"], out["gamma_1d_rate"] = ((), k1), ((), r1)
    k2, r2 = _stationary.gamma_type_law(m, n, lr)
    out["gamma_type_shape"], out["gamma_type_rate"] = ((), k2), ((), r2)
    return out


def _teacher_laws(cfg: Config, t: np.ndarray, step: float) -> dict[str, Any]:
    if cfg.optim.weight_decay != 0:
        return {}
    m, n, sig0 = cfg.model.rows, cfg.model.cols, cfg.model.sigma
    err0 = m * (sig0**2 + cfg.data.teacher_variance)
    err = _stationary.sgd_teacher_error(t, err0, m, n, cfg.optim.lr, cfg.optim.batch_size, cfg.data.noise,
                                        cfg.optim.grad_noise, step)
    return {"expected_test_loss": (("t",), 0.5 * (err + m * cfg.data.noise**2))}


#: ``model.drift`` → its closed-form laws (besides the Marchenko–Pastur edges of W(0), which every drift has).
DRIFT_LAWS: dict[str, Callable[[Config, np.ndarray, float], dict[str, Any]]] = {
    "noise": _noise_laws,
    "teacher": _teacher_laws,
    "phase_teacher": lambda cfg, t, step: {},
}


def laws(cfg: Config, t: np.ndarray, step: float) -> dict[str, Any]:
    """Closed forms for the run's step h (η/substeps for the SDE): ``mp_init_edge``; for ``noise``
    ``expected_sum_sq`` (exact E|W_t|²), and with weight decay the Laguerre law (``stationary_edge``,
    ``stationary_sum_sq``) and the 1-D gamma law; the provisional gamma-type law; for ``teacher`` without
    weight decay ``expected_test_loss`` (exact for SGD and for the state-noise matrix SDE)."""
    m, n = cfg.model.rows, cfg.model.cols
    lo, hi = _stationary.mp_sv_edges(m, n, cfg.model.sigma**2 / n)
    return {"mp_init_edge": (("edge",), np.array([lo, hi])), **DRIFT_LAWS[cfg.model.drift](cfg, t, step)}


def _to_dataset(cfg: Config, out: tuple[Any, Any, Any]) -> xr.Dataset:
    rec, d0, extra = jax.tree_util.tree_map(np.asarray, out)
    ds = records_dataset(cfg, rec, d0, "member", extra)
    lw = laws(cfg, ds["t"].values, cfg.optim.lr / cfg.solver.substeps)
    ds = ds.assign(lw)
    if "edge" in ds.dims:
        ds.coords["edge"] = ["lower", "upper"]
    return ds


def _values(cfg: Config) -> dict[str, Array]:
    return {k: jnp.asarray(v, jnp.float64) for k, v in hyper_values(cfg).items()}


def solve_config(cfg: Config) -> xr.Dataset:
    """The SDE ensemble forecast of one config (dims ``member``, ``t``, ``i``) with its closed-form laws."""
    check_config(cfg)
    return _to_dataset(cfg, sde_ensemble(_values(cfg), cfg.simulate.seed, **_static(cfg)))


def solve_batch(cfgs: Sequence[Config]) -> list[xr.Dataset]:
    """Configs that differ only in vmappable keys (and the seed), vmapped under one compile."""
    for c in cfgs:
        check_config(c)
    statics = {tuple(sorted(_static(c).items())) for c in cfgs}
    if len(statics) > 1:
        return [solve_config(c) for c in cfgs]
    static = _static(cfgs[0])
    values = {k: jnp.stack([v[k] for v in map(_values, cfgs)]) for k in hyper_values(cfgs[0])}
    seeds = jnp.asarray([c.simulate.seed for c in cfgs])
    outs = jax.vmap(lambda v, s: sde_ensemble(v, s, **static))(values, seeds)
    return [_to_dataset(c, jax.tree_util.tree_map(lambda a, j=j: a[j], outs)) for j, c in enumerate(cfgs)]
