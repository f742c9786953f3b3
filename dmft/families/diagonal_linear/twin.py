r"""Finite-dimensional twin of the diagonal linear network (conventions.md §5), in JAX + optax.

A real network is trained at dimension d: X ∈ R^{P×d} with iid N(0, 1) entries, P = round(α d), teacher β*
drawn iid from the prior, y = Xβ*/√d + ε, predictor f(x) = β·x/√d with β = u⊙v ("uv") or u₊⊙u₊ − u₋⊙u₋ ("pm"),
mean squared loss L = ½P⁻¹|y − Xβ/√d|², full-batch GD with step ηd on every parameter and weight decay λ
(θ ← θ − ηd(∂L/∂θ + (λ/d)θ), i.e. ``optax.add_decayed_weights(λ/d)`` then ``optax.sgd(ηd)``). The gradient is
``jax.grad`` of the loss, not the hand-written update of the theory. Seeds are vmapped; time is a
``lax.scan``.

Records per seed: ``train_loss`` = L(θ(t)), ``test_loss`` = ½(|β(t) − β*|²/d + σ_ε²) (exact over fresh data),
β at the snapshot steps, and β*. Divergence per seed (:mod:`dmft.results`, ``solver.divergence_threshold``): the
values after the first diverged step are NaN. Imports the problem definition (:mod:`.problem`) only, never the
theory.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import xarray as xr
from jaxtyping import Array, PRNGKeyArray

import dmft._jax  # noqa: F401  (refuses known-bad JAX versions)

from ...config import Config
from ...results import mask_after, status_variables
from .problem import Params, form_of, loss_divergence, params_from_config, sample_teacher, snapshot_steps

__all__ = ["TwinSpec", "spec_from_config", "train", "simulate_config"]


class TwinSpec(NamedTuple):
    """Static sizes of one finite-dimensional run."""

    dim: int  # d
    samples: int  # P = round(α d)
    steps: int  # T
    form: str
    prior: str
    snapshots: tuple[int, ...]


def spec_from_config(cfg: Config) -> TwinSpec:
    d = cfg.simulate.dim
    return TwinSpec(
        d,
        max(1, round(cfg.data.alpha * d)),
        cfg.optim.steps,
        cfg.model.form,
        cfg.data.prior,
        snapshot_steps(cfg),
    )


def train(key: PRNGKeyArray, p: Params, spec: TwinSpec) -> dict[str, Array]:
    """Train one network: ``train_loss``, ``test_loss`` (T,), ``beta`` (snapshots, d), ``beta_star`` (d,)."""
    d, P = spec.dim, spec.samples
    k_x, k_b, k_e = jax.random.split(key, 3)
    X = jax.random.normal(k_x, (P, d))
    beta_star = sample_teacher(k_b, d, p, spec.prior, stratified=False)
    y = X @ beta_star / math.sqrt(d) + p.noise * jax.random.normal(k_e, (P,))
    fm = form_of(spec.form)
    u, v = fm.init(p, (d,))
    params = {"u": u, "v": v}

    def beta(prm: dict[str, Array]) -> Array:
        return fm.beta((prm["u"], prm["v"]))

    def loss(prm: dict[str, Array]) -> Array:
        r = y - X @ beta(prm) / math.sqrt(d)
        return 0.5 * jnp.mean(r * r)

    opt = optax.chain(optax.add_decayed_weights(p.weight_decay / d), optax.sgd(p.lr * d))
    snaps = jnp.asarray(spec.snapshots)

    def body(carry: tuple, t: Array) -> tuple[tuple, tuple[Array, Array]]:
        prm, st, snap = carry
        b = beta(prm)
        snap = jnp.where((snaps == t)[:, None], b[None, :], snap)
        err = b - beta_star
        test = 0.5 * (jnp.mean(err * err) + p.noise**2)
        train_loss, grads = jax.value_and_grad(loss)(prm)
        updates, st = opt.update(grads, st, prm)
        return (optax.apply_updates(prm, updates), st, snap), (train_loss, test)

    init = (params, opt.init(params), jnp.zeros((len(spec.snapshots), d)))
    (_, _, snap), (train_l, test_l) = jax.lax.scan(body, init, jnp.arange(spec.steps))
    return {"train_loss": train_l, "test_loss": test_l, "beta": snap, "beta_star": beta_star}


def simulate_config(cfg: Config, progress: bool = False) -> xr.Dataset:
    """Train ``simulate.seeds`` networks for one config: vmapped in equal batches (about 200 MB of data each,
    one compile), with a progress bar over batches."""
    spec = spec_from_config(cfg)
    p = params_from_config(cfg)
    n = cfg.simulate.seeds
    keys = jax.random.split(jax.random.key(cfg.simulate.seed), n)
    run = jax.jit(jax.vmap(lambda k: train(k, p, spec)))
    per_batch = max(1, min(n, int(2e8 // (8 * spec.samples * spec.dim + 1))))
    n_batches = -(-n // per_batch)
    per_batch = -(-n // n_batches)
    keys_p = jnp.concatenate([keys, keys[: n_batches * per_batch - n]])  # pad to equal batches
    batches = range(n_batches)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="diagonal_linear twin", unit="batch")
    parts = [run(keys_p[b * per_batch : (b + 1) * per_batch]) for b in batches]
    out = {k: np.concatenate([np.asarray(o[k]) for o in parts])[:n] for k in parts[0]}

    diverged, bad = loss_divergence(out["train_loss"], out["test_loss"], cfg.solver.divergence_threshold)
    t = np.arange(spec.steps)
    for name in ("train_loss", "test_loss"):
        out[name] = mask_after(out[name], bad, t)
    out["beta"] = mask_after(out["beta"], bad[:, None], np.asarray(spec.snapshots), t_axis=1)
    if diverged.any():
        warnings.warn(
            f"diagonal_linear twin: {diverged.sum()} of {len(bad)} seeds diverged (first at step "
            f"{bad[diverged].min()}); values after it are NaN",
            RuntimeWarning,
            stacklevel=2,
        )
    return xr.Dataset(
        {
            "train_loss": (("seed", "t"), out["train_loss"]),
            "test_loss": (("seed", "t"), out["test_loss"]),
            "beta": (("seed", "t_snap", "i"), out["beta"]),
            "beta_star": (("seed", "i"), out["beta_star"]),
            **status_variables(diverged, bad, True, dims=("seed",)),
        },
        coords={
            "seed": np.arange(len(keys)),
            "t": t,
            "t_snap": list(spec.snapshots),
            "i": np.arange(spec.dim),
        },
        attrs={"family": "diagonal_linear", "dim": spec.dim, "samples_P": spec.samples},
    )
