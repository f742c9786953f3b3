"""The SDE forecast for configs: an ensemble of matrix (or singular-value) SDE runs, vmapped, under one
compile.

``solve_config(cfg)`` integrates ``solver.ensemble`` members; member i starts from the same instance as SGD
seed i of the twin (:func:`._problem.problem_key`) with independent noise. ``solve_batch(cfgs)`` vmaps configs
that differ only in vmappable keys (lr, sigma, grad_noise, weight_decay, noise, teacher_variance) over one
compiled function.
"""

from __future__ import annotations

from collections.abc import Sequence
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
from . import _phase
from ._dataset import build_dataset, check_config, hyper_values, record_schedule
from ._matrix import diffusion_coefficient, integrate_matrix_sde
from ._problem import hyper_from_values, member_problem, noise_key
from ._singular import integrate_sv_sde

__all__ = ["solve_config", "solve_batch", "sde_ensemble"]


@partial(
    jax.jit,
    static_argnames=(
        "drift",
        "level",
        "rows",
        "cols",
        "samples",
        "ensemble",
        "seed",
        "n_records",
        "record_every",
        "substeps",
        "noise_model",
        "beta",
        "pair",
    ),
)
def sde_ensemble(
    values: dict[str, Array],
    *,
    drift: str,
    level: str,
    rows: int,
    cols: int,
    samples: int,
    ensemble: int,
    seed: int,
    n_records: int,
    record_every: int,
    substeps: int = 1,
    noise_model: str = "state",
    beta: float = 1.0,
    pair: bool = True,
) -> tuple[dict[str, Array], Array, dict[str, Array]]:
    """Run ``ensemble`` members of the SDE. ``values``: the scalars of :func:`._dataset.hyper_values`.

    ``beta`` (Dyson index) and ``pair`` (level repulsion on/off) act on the singular-value level only.

    Returns ``(records, diffusion0, extra)``: records with leading axes (member, record); 𝒟 at W(0) per
    member; for ``phase_teacher`` the criterion and observables at the final weights (else empty).
    """
    require_x64("sde_ensemble")
    hyper = hyper_from_values(values)

    def member(i: Array) -> tuple[dict[str, Array], Array, dict[str, Array]]:
        prob = member_problem(values, seed, i, drift=drift, rows=rows, cols=cols, samples=samples)
        key = noise_key(seed, i, "sde")
        d0 = diffusion_coefficient(drift, prob.w0, prob, hyper)
        if level == "singular_values":
            s0 = svdvals(prob.w0)
            s_star = svdvals(prob.w_star) if drift == "teacher" else None
            rec, _ = integrate_sv_sde(
                key,
                s0,
                s_star,
                hyper,
                drift=drift,
                rows=rows,
                cols=cols,
                n_records=n_records,
                record_every=record_every,
                substeps=substeps,
                noise_model=noise_model,
                beta=beta,
                pair=pair,
            )
            return rec, d0, {} if s_star is None else {"teacher_sv": s_star}
        rec, w_final = integrate_matrix_sde(
            key,
            prob,
            hyper,
            drift=drift,
            n_records=n_records,
            record_every=record_every,
            substeps=substeps,
            noise_model=noise_model,
        )
        return rec, d0, _phase.final_observables(drift, prob, w_final, hyper, values["sigma"])

    return jax.vmap(member)(jnp.arange(ensemble))


def _static(cfg: Config) -> dict[str, Any]:
    n_records, every = record_schedule(cfg)
    return {
        "drift": cfg.model.drift,
        "level": cfg.solver.level,
        "rows": cfg.model.rows,
        "cols": cfg.model.cols,
        "samples": cfg.data.samples,
        "ensemble": cfg.solver.ensemble,
        "seed": cfg.simulate.seed,
        "n_records": n_records,
        "record_every": every,
        "substeps": cfg.solver.substeps,
        "noise_model": cfg.solver.noise_model,
    }


def _to_dataset(cfg: Config, out: tuple[Any, Any, Any]) -> xr.Dataset:
    rec, d0, extra = jax.tree_util.tree_map(np.asarray, out)
    return build_dataset(cfg, rec, d0, "member", cfg.optim.lr / cfg.solver.substeps, extra)


def solve_config(cfg: Config) -> xr.Dataset:
    """The SDE ensemble forecast of one config (dims ``member``, ``t``, ``i``) with its closed-form laws."""
    check_config(cfg)
    values = {k: jnp.asarray(v, jnp.float64) for k, v in hyper_values(cfg).items()}
    return _to_dataset(cfg, sde_ensemble(values, **_static(cfg)))


def solve_batch(cfgs: Sequence[Config]) -> list[xr.Dataset]:
    """Configs that differ only in vmappable keys, vmapped under one compile."""
    for c in cfgs:
        check_config(c)
    statics = {tuple(sorted(_static(c).items())) for c in cfgs}
    if len(statics) > 1:
        return [solve_config(c) for c in cfgs]
    names = list(hyper_values(cfgs[0]))
    values = {k: jnp.asarray([hyper_values(c)[k] for c in cfgs], jnp.float64) for k in names}
    outs = jax.vmap(partial(sde_ensemble, **_static(cfgs[0])))(values)
    return [_to_dataset(c, jax.tree_util.tree_map(lambda a, j=j: a[j], outs)) for j, c in enumerate(cfgs)]
