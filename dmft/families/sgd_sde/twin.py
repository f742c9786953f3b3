"""Finite twin of ``sgd_sde``: real minibatch SGD on the same instances as the SDE forecast.

One step (conventions.md §6), with batch B, rate η and weight decay λ_wd:

    W ← W − η( ĝ + λ_wd W ),   ĝ = mean over the batch of the per-sample gradients + ξ̄,   ξ̄_ij ~ N(0,
    σ_g²/B)

(ξ̄ is the batch mean of the injected isotropic per-sample noise of std σ_g, drawn directly since it is
Gaussian). Per-sample gradients by loss model (:mod:`dmft.families.sgd_sde._problem`):

* ``noise``: none (only the injected noise);
* ``teacher``: one pass: a fresh batch x_b ~ N(0, I_n), y_b = W* x_b + ε_b every step, ∇ℓ_b = (W x_b − y_b)
  x_bᵀ;
* ``phase_teacher``: the tanh network on its fixed training set, visited in ⌊P/B⌋ batches in a fixed order
  (2509.01349), ∇ℓ_b = −φ_b h⁰_bᵀ.

Seed i uses instance i (the SDE's member i) with its own noise key; records and variables are those of the SDE
forecast with the ensemble dim named ``seed``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jaxtyping import Array, Float, PRNGKeyArray

import dmft._jax  # noqa: F401  (refuses known-bad JAX versions)

from ...config import Config
from . import _phase, _tanh_net
from ._dataset import build_dataset, check_config, hyper_values, record_schedule
from ._matrix import diffusion_coefficient, matrix_observables
from ._problem import Hyper, Problem, hyper_from_values, member_problem, noise_key, normals

__all__ = ["simulate_config", "sgd_step", "run_sgd", "sgd_ensemble"]


def _batch_gradient(
    drift: str, w: Array, prob: Problem, draws: list[Array], k: Array, hyper: Hyper, batch: int
) -> Array:
    """Mean per-sample gradient of the loss over the batch of step ``k`` (zero for ``noise``).

    ``draws`` (teacher): standard normals of shapes (B, n) for the inputs and (B, m) for the label noise.
    """
    if drift == "noise":
        return jnp.zeros_like(w)
    if drift == "teacher":
        x, eps = draws
        y = x @ prob.w_star.T + hyper.label_noise * eps
        return (x @ w.T - y).T @ x / batch
    n_batches = prob.train.h0.shape[0] // batch
    start = (k % n_batches) * batch
    sub = _tanh_net.TanhData(
        jax.lax.dynamic_slice_in_dim(prob.train.h0, start, batch),
        jax.lax.dynamic_slice_in_dim(prob.train.y, start, batch),
        prob.train.z,
    )
    return -_tanh_net.descent_direction(w, sub)


def sgd_step(
    drift: str, w: Array, prob: Problem, key: PRNGKeyArray, k: Array, hyper: Hyper, batch: int
) -> Array:
    """W ← W − η(ĝ + λ_wd W) with ĝ the minibatch gradient plus the injected noise ξ̄ ~ N(0, σ_g²/B)."""
    m, n = w.shape
    shapes = [(m, n)] + ([(batch, n), (batch, m)] if drift == "teacher" else [])
    injected, *draws = normals(key, *shapes)
    grad = _batch_gradient(drift, w, prob, draws, k, hyper, batch)
    grad = grad + hyper.grad_noise / jnp.sqrt(hyper.batch_size) * injected
    return w - hyper.lr * (grad + hyper.weight_decay * w)


def run_sgd(
    key: PRNGKeyArray,
    prob: Problem,
    hyper: Hyper,
    *,
    drift: str,
    batch: int,
    n_records: int,
    record_every: int,
) -> tuple[dict[str, Array], Float[Array, "m n"]]:
    """One SGD run from ``prob.w0``; records as :func:`dmft.families.sgd_sde.integrate_matrix_sde`."""

    def inner(carry: tuple[Array, Array], _: None) -> tuple[tuple[Array, Array], None]:
        w, k = carry
        return (sgd_step(drift, w, prob, jax.random.fold_in(key, k), k, hyper, batch), k + 1), None

    def outer(carry: tuple[Array, Array], _: None) -> tuple[tuple[Array, Array], dict[str, Array]]:
        carry, _ = jax.lax.scan(inner, carry, None, length=record_every)
        return carry, matrix_observables(drift, carry[0], prob, hyper)

    first = matrix_observables(drift, prob.w0, prob, hyper)
    (w_final, _), rest = jax.lax.scan(outer, (prob.w0, jnp.asarray(0, jnp.int32)), None, length=n_records - 1)
    records = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a[None], b], axis=0), first, rest)
    return records, w_final


@partial(
    jax.jit,
    static_argnames=("drift", "rows", "cols", "samples", "batch", "seed", "n_records", "record_every"),
)
def sgd_ensemble(
    values: dict[str, Array],
    indices: Array,
    *,
    drift: str,
    rows: int,
    cols: int,
    samples: int,
    batch: int,
    seed: int,
    n_records: int,
    record_every: int,
) -> tuple[dict[str, Array], Array, dict[str, Array]]:
    """SGD runs for instance ``indices`` (vmapped). Returns ``(records, diffusion0, extra)`` like the
    SDE's."""
    hyper = hyper_from_values(values)

    def one(i: Array) -> tuple[dict[str, Array], Array, dict[str, Array]]:
        prob = member_problem(values, seed, i, drift=drift, rows=rows, cols=cols, samples=samples)
        rec, w_final = run_sgd(
            noise_key(seed, i, "sgd"),
            prob,
            hyper,
            drift=drift,
            batch=batch,
            n_records=n_records,
            record_every=record_every,
        )
        final = _phase.final_observables(drift, prob, w_final, hyper, values["sigma"])
        return rec, diffusion_coefficient(drift, prob.w0, prob, hyper), final

    return jax.vmap(one)(indices)


def simulate_config(cfg: Config, progress: bool = False) -> xr.Dataset:
    """``simulate.seeds`` SGD runs of one config (dims ``seed``, ``t``, ``i``), same variables as the SDE."""
    check_config(cfg)
    n_records, every = record_schedule(cfg)
    static: dict[str, Any] = {
        "drift": cfg.model.drift,
        "rows": cfg.model.rows,
        "cols": cfg.model.cols,
        "samples": cfg.data.samples,
        "batch": cfg.optim.batch_size,
        "seed": cfg.simulate.seed,
        "n_records": n_records,
        "record_every": every,
    }
    values = {k: jnp.asarray(v, jnp.float64) for k, v in hyper_values(cfg).items()}
    seeds = cfg.simulate.seeds
    chunk = max(1, -(-seeds // 10)) if progress else seeds
    starts = range(0, seeds, chunk)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="sgd_sde twin", unit="chunk")
    parts = [
        jax.tree_util.tree_map(
            np.asarray, sgd_ensemble(values, jnp.arange(s, min(s + chunk, seeds)), **static)
        )
        for s in starts
    ]
    rec, d0, extra = jax.tree_util.tree_map(lambda *a: np.concatenate(a, axis=0), *parts)
    return build_dataset(cfg, rec, d0, "seed", cfg.optim.lr, extra)
