"""Finite twin of ``sgd_sde``: real minibatch SGD on the same instances as the SDE forecast.

One step (conventions.md §6), with batch B, rate η and weight decay λ_wd:

    W ← W − η( ĝ + λ_wd W ),   ĝ = mean over the batch of the per-sample gradients + ξ̄,   ξ̄_ij ~ N(0,
    σ_g²/B)

(ξ̄ is the batch mean of the injected isotropic per-sample noise of std σ_g, drawn directly since it is
Gaussian). Per-sample gradients by loss model (the :class:`.problem.Drift` of ``model.drift``):

* ``noise``: none (only the injected noise);
* ``teacher``: one pass: a fresh batch x_b ~ N(0, I_n), y_b = W* x_b + ε_b every step, ∇ℓ_b = (W x_b − y_b)
  x_bᵀ;
* ``phase_teacher``: the tanh network on its fixed training set, visited in ⌊P/B⌋ batches in a fixed order
  (2509.01349), ∇ℓ_b = −φ_b h⁰_bᵀ.

Seed i uses instance i (the SDE's member i) with its own noise key; records, status and variables are those of the
SDE forecast (:func:`.problem.records_dataset`) with the ensemble dim named ``seed``; the closed-form laws are the
theory's and are not repeated here. Imports the problem definition (:mod:`.problem`) only, never the theory;
``seed`` is traced (a new seed does not recompile).
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
from .problem import (
    Drift,
    Hyper,
    Problem,
    check_config,
    diffusion_coefficient,
    drift_of,
    final_observables,
    hyper_from_values,
    hyper_values,
    matrix_observables,
    member_problem,
    noise_key,
    normals,
    records_dataset,
    schedule,
)

__all__ = ["simulate_config", "sgd_step", "run_sgd", "sgd_ensemble"]


def sgd_step(
    drift: str | Drift, w: Array, prob: Problem, key: PRNGKeyArray, k: Array, hyper: Hyper, batch: int
) -> Array:
    """W ← W − η(ĝ + λ_wd W) with ĝ the minibatch gradient plus the injected noise ξ̄ ~ N(0, σ_g²/B)."""
    d = drift_of(drift)
    m, n = w.shape
    injected, *draws = normals(key, (m, n), *d.batch_draws(m, n, batch))
    grad = d.batch_gradient(w, prob, draws, k, hyper.label_noise, batch)
    grad = grad + hyper.grad_noise / jnp.sqrt(hyper.batch_size) * injected
    return w - hyper.lr * (grad + hyper.weight_decay * w)


def run_sgd(
    key: PRNGKeyArray,
    prob: Problem,
    hyper: Hyper,
    *,
    drift: str | Drift,
    batch: int,
    n_records: int,
    record_every: int,
    tail: int = 0,
) -> tuple[dict[str, Array], Float[Array, "m n"]]:
    """One SGD run from ``prob.w0``; records as :func:`dmft.families.sgd_sde.integrate_matrix_sde` (``n_records``
    every ``record_every`` steps, then one more ``tail`` steps later when ``tail`` > 0)."""
    d = drift_of(drift)

    def inner(carry: tuple[Array, Array], _: None) -> tuple[tuple[Array, Array], None]:
        w, k = carry
        return (sgd_step(d, w, prob, jax.random.fold_in(key, k), k, hyper, batch), k + 1), None

    def outer(carry: tuple[Array, Array], _: None) -> tuple[tuple[Array, Array], dict[str, Array]]:
        carry, _ = jax.lax.scan(inner, carry, None, length=record_every)
        return carry, matrix_observables(d, carry[0], prob, hyper)

    first = matrix_observables(d, prob.w0, prob, hyper)
    carry, rest = jax.lax.scan(outer, (prob.w0, jnp.asarray(0, jnp.int32)), None, length=n_records - 1)
    parts = [jax.tree_util.tree_map(lambda a: a[None], first), rest]
    if tail:
        carry, _ = jax.lax.scan(inner, carry, None, length=tail)
        parts.append(jax.tree_util.tree_map(lambda a: a[None], matrix_observables(d, carry[0], prob, hyper)))
    records = jax.tree_util.tree_map(lambda *a: jnp.concatenate(a, axis=0), *parts)
    return records, carry[0]


@partial(
    jax.jit,
    static_argnames=("drift", "rows", "cols", "samples", "batch", "n_records", "record_every", "tail"),
)
def sgd_ensemble(
    values: dict[str, Array],
    indices: Array,
    seed: int | Array = 0,
    *,
    drift: str,
    rows: int,
    cols: int,
    samples: int,
    batch: int,
    n_records: int,
    record_every: int,
    tail: int = 0,
) -> tuple[dict[str, Array], Array, dict[str, Array]]:
    """SGD runs for instance ``indices`` (vmapped; ``seed`` traced). Returns ``(records, diffusion0, extra)`` like
    the SDE's."""
    hyper = hyper_from_values(values)
    d = drift_of(drift)

    def one(i: Array) -> tuple[dict[str, Array], Array, dict[str, Array]]:
        prob = member_problem(values, seed, i, drift=d, rows=rows, cols=cols, samples=samples)
        rec, w_final = run_sgd(noise_key(seed, i, "sgd"), prob, hyper, drift=d, batch=batch, n_records=n_records,
                               record_every=record_every, tail=tail)
        final = final_observables(d, prob, w_final, hyper, values["sigma"])
        return rec, diffusion_coefficient(d, prob.w0, prob, hyper), final

    return jax.vmap(one)(indices)


def simulate_config(cfg: Config, progress: bool = False) -> xr.Dataset:
    """``simulate.seeds`` SGD runs of one config (dims ``seed``, ``t``, ``i``), same variables as the SDE."""
    check_config(cfg)
    sch = schedule(cfg)
    static: dict[str, Any] = {
        "drift": cfg.model.drift,
        "rows": cfg.model.rows,
        "cols": cfg.model.cols,
        "samples": cfg.data.samples,
        "batch": cfg.optim.batch_size,
        "n_records": sch.uniform,
        "record_every": sch.every,
        "tail": sch.tail,
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
            np.asarray, sgd_ensemble(values, jnp.arange(s, min(s + chunk, seeds)), cfg.simulate.seed, **static)
        )
        for s in starts
    ]
    rec, d0, extra = jax.tree_util.tree_map(lambda *a: np.concatenate(a, axis=0), *parts)
    return records_dataset(cfg, rec, d0, "seed", extra)
