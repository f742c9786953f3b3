"""Config → DMFT solve → xarray Dataset, for one config or a batch under one compile."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

import dmft._jax  # noqa: F401  (refuses known-bad JAX versions)

from ...config import Config, ConfigError
from ...results import mask_after, status_variables
from . import _oracles as O
from ._dmft import causal_solve, picard_solve
from .problem import Params, loss_divergence, params_from_config, sample_teacher, snapshot_steps

__all__ = [
    "Static",
    "solve_arrays",
    "oracle_arrays",
    "solve_arrays_batch",
    "solve_config",
    "solve_batch",
]


class Static(NamedTuple):
    """What fixes array shapes and code paths (configs sharing it are solved under one compile)."""

    steps: int
    samples: int
    form: str
    prior: str
    method: str
    response: str
    iterations: int
    replicas: int
    snapshots: tuple[int, ...]


def static_of(cfg: Config) -> Static:
    s = cfg.solver
    return Static(
        cfg.optim.steps,
        s.samples,
        cfg.model.form,
        cfg.data.prior,
        s.method,
        s.response,
        s.iterations,
        s.replicas,
        snapshot_steps(cfg),
    )


# ------------------------------------------------------------------------------------------------------------
# Array level
# ------------------------------------------------------------------------------------------------------------


def _one_solve(p: Params, key: jax.Array, n: int, tol: jax.Array, damping: jax.Array, st: Static) -> Any:
    k_b, k_z = jax.random.split(key)
    beta_star = sample_teacher(k_b, n, p, st.prior)
    z = jax.random.normal(k_z, (st.steps, n))
    if st.method == "causal":
        return causal_solve(p, beta_star, z, form=st.form, response=st.response), beta_star
    sol = picard_solve(
        p, beta_star, z, form=st.form, response=st.response, damping=damping, tol=tol, max_iter=st.iterations
    )
    return sol, beta_star


def _losses(sol: Any, p: Params) -> tuple[jax.Array, jax.Array]:
    return 0.5 * (jnp.diagonal(sol.C) + jnp.asarray(p.noise) ** 2), 0.5 * jnp.diagonal(sol.CD)


@partial(jax.jit, static_argnames=("st",))
def solve_arrays(p: Params, key: jax.Array, tol: jax.Array, damping: jax.Array, st: Static) -> dict[str, Any]:
    """The DMFT for one set of parameters, with its Monte Carlo error (pure; ``lax.map`` over ``p`` to batch).

    Error estimate: the same equations solved for ``st.replicas`` independent groups of S/K samples (one after
    the other: memory of one group); the spread of their loss curves, divided by √K, estimates the error of
    the S-sample solve, including the part that feeds back through the sampled kernels H and C_Δ.
    """
    sol, beta_star = _one_solve(p, key, st.samples, tol, damping, st)
    test, train = _losses(sol, p)
    if st.replicas:
        n_rep = st.samples // st.replicas
        keys = jax.random.split(jax.random.fold_in(key, 1), st.replicas)
        reps = jax.lax.map(lambda k: _losses(_one_solve(p, k, n_rep, tol, damping, st)[0], p), keys)
        test_se, train_se = (jnp.std(r, axis=0, ddof=1) / jnp.sqrt(st.replicas) for r in reps)
    else:
        test_se = train_se = jnp.full(st.steps, jnp.nan)
    snaps = jnp.asarray(st.snapshots)
    return {
        "train_loss": train,
        "test_loss": test,
        "train_loss_mcse": train_se,
        "test_loss_mcse": test_se,
        "C_beta": sol.C,
        "R_beta": sol.R,
        "C_delta": sol.CD,
        "beta": sol.beta[snaps],
        "beta_star": beta_star,
        "residual": sol.residual,
        "iterations": sol.iterations,
        "residual_history": sol.history,
        "degenerate_rows": jnp.sum(~sol.active),
    }


@partial(jax.jit, static_argnames=("steps", "form", "prior"))
def oracle_arrays(p: Params, steps: int, form: str, prior: str) -> dict[str, Any]:
    """Reference curves for the same parameters: lazy limit, search phase, fixed point, late rate."""
    lazy_test, lazy_train = O.lazy_curves(p, form, steps)
    fp = O.fixed_point(p, form, prior)
    ok = (jnp.asarray(p.weight_decay) == 0) & (jnp.asarray(p.alpha) != 1) & fp.converged
    return {
        "test_loss_lazy": lazy_test,
        "train_loss_lazy": lazy_train,
        "test_loss_small_init": O.small_init_curve(p, form, prior, steps),
        "test_loss_fixed_point": jnp.where(ok, fp.test_loss, jnp.nan),
        "late_rate_oracle": jnp.where(ok, O.late_time_rate(fp, p, form), jnp.nan),
    }


# ------------------------------------------------------------------------------------------------------------
# Dataset
# ------------------------------------------------------------------------------------------------------------


def _dataset(out: dict[str, np.ndarray], cfg: Config, st: Static) -> xr.Dataset:
    T = st.steps
    tol = cfg.solver.tol
    d, k = loss_divergence(out["train_loss"], out["test_loss"], cfg.solver.divergence_threshold)
    diverged, bad = bool(d), int(k)
    t = np.arange(T)
    curves = {name: ("t", mask_after(out[name], bad, t))
              for name in ("train_loss", "test_loss", "train_loss_mcse", "test_loss_mcse")}
    residual = float(out["residual"])
    converged = bool(np.isfinite(residual) and residual < tol and not diverged)
    if diverged:
        warnings.warn(
            f"diagonal_linear DMFT diverged at step {bad} (lr = {cfg.optim.lr}, init_scale = "
            f"{cfg.model.init_scale}); losses after that step are NaN",
            RuntimeWarning,
            stacklevel=3,
        )
    elif not converged:
        warnings.warn(
            f"diagonal_linear DMFT not converged: residual {residual:.3g} >= solver.tol = {tol:g} "
            f"after {int(out['iterations'])} iterations",
            RuntimeWarning,
            stacklevel=3,
        )
    hist = np.asarray(out["residual_history"])
    hist = hist[: max(1, int(out["iterations"]))]
    two = ("t", "s")
    ds = xr.Dataset(
        {
            **curves,
            "C_beta": (two, mask_after(mask_after(out["C_beta"], bad, t, 0), bad, t, 1)),
            "R_beta": (two, mask_after(mask_after(out["R_beta"], bad, t, 0), bad, t, 1)),
            "C_delta": (two, mask_after(mask_after(out["C_delta"], bad, t, 0), bad, t, 1)),
            "beta": (("t_snap", "i"), mask_after(out["beta"], bad, np.asarray(st.snapshots), 0)),
            "beta_star": ("i", out["beta_star"]),
            "test_loss_lazy": ("t", out["test_loss_lazy"]),
            "train_loss_lazy": ("t", out["train_loss_lazy"]),
            "test_loss_small_init": ("t", out["test_loss_small_init"]),
            "test_loss_fixed_point": ((), float(out["test_loss_fixed_point"])),
            "late_rate_oracle": ((), float(out["late_rate_oracle"])),
            **status_variables(diverged, bad, converged),
            "residual": ((), residual),
            "residual_history": ("iteration", hist),
            "degenerate_rows": ((), int(out["degenerate_rows"])),
        },
        coords={
            "t": np.arange(T),
            "s": np.arange(T),
            "t_snap": list(st.snapshots),
            "i": np.arange(st.samples),
            "iteration": np.arange(1, len(hist) + 1),
        },
        attrs={"family": "diagonal_linear"},
    )
    return ds


def _run(p: Params, key: jax.Array, tol: jax.Array, damping: jax.Array, st: Static) -> dict[str, Any]:
    return {**solve_arrays(p, key, tol, damping, st), **oracle_arrays(p, st.steps, st.form, st.prior)}


@partial(jax.jit, static_argnames=("st",))
def solve_arrays_batch(ps: Params, key: jax.Array, tol: jax.Array, damping: jax.Array, st: Static) -> dict:
    """:func:`solve_arrays` and :func:`oracle_arrays` over stacked parameters, one after the other
    (``lax.map``: one compile, the memory of one solve)."""
    return jax.lax.map(lambda p: _run(p, key, tol, damping, st), ps)


def _solver_args(cfg: Config) -> tuple[jax.Array, jax.Array, jax.Array]:
    return jax.random.key(cfg.solver.seed), jnp.asarray(cfg.solver.tol), jnp.asarray(cfg.solver.damping)


def solve_config(cfg: Config) -> xr.Dataset:
    """The DMFT prediction for one config (``model.family = "diagonal_linear"``)."""
    st = static_of(cfg)
    out = jax.tree_util.tree_map(np.asarray, _run(params_from_config(cfg), *_solver_args(cfg), st))
    return _dataset(out, cfg, st)


def solve_batch(cfgs: Sequence[Config]) -> list[xr.Dataset]:
    """Configs that differ only in vmappable keys (lr, init_scale, alpha, noise, weight_decay,
    teacher_variance, sparsity), solved under a single compile with the same Monte Carlo samples (common
    random numbers)."""
    st = static_of(cfgs[0])
    fixed = {(static_of(c), c.solver.seed, c.solver.tol, c.solver.damping) for c in cfgs}
    if len(fixed) != 1:
        raise ConfigError("solve_batch: configs must differ only in vmappable keys")
    ps = jax.tree_util.tree_map(
        lambda *x: jnp.asarray(x, dtype=jnp.float64), *[params_from_config(c) for c in cfgs]
    )
    outs = jax.tree_util.tree_map(np.asarray, solve_arrays_batch(ps, *_solver_args(cfgs[0]), st))
    return [_dataset(jax.tree_util.tree_map(lambda x, i=i: x[i], outs), c, st) for i, c in enumerate(cfgs)]
