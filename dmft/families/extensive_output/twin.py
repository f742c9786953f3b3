r"""Finite-width twin of the extensive-output model (extensive_outputs.md §2, §4), weight form and Gram form.

**Weight form** (any α): the state is (V, M), V = W_out/√D (C×N), M = W⁰/√D (N×D); with A = VM/(γ0ν),
Σ̂ = XᵀX/P, Ẽ = EX/P and a = ηγ0,

    Q = (B − A)Σ̂ + Ẽ,     V ← V + a Q Mᵀ  (trained readout only),     M ← M + a VᵀQ.

**Gram form** (exact, N-free): the state is h = VVᵀ (C×C), k = MᵀM (D×D) and A (C×D),

    h' = h + aγ0ν(QAᵀ + AQᵀ) + a² Q k Qᵀ
    k' = k + aγ0ν(QᵀA + AᵀQ) + a² Qᵀ h Q
    A' = A + (η/ν)(Qk + hQ) + a² Q Aᵀ Q          (frozen readout: h fixed, A' = A + (η/ν) h Q)

started from the Wishart matrix ZᵀZ = [[h, γ0νA], [γ0νAᵀ, k]] (:func:`problem.sample_init_gram`): cost
O((C + D)³) per step whatever N. The singular values of M are √eig(k).

Losses are per channel: test = ½(|A − B|²_F/C + σ_ε²), train = ½|Y − F|²_F/(PC) (population: train = test).
Spectra: the min(N, D) largest singular values of M (or of M/√ν in ``width`` units) at the recorded steps
(:func:`dmft.results.record_steps`). This module never imports the theory.
"""

from __future__ import annotations

import warnings
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from dmft.results import record_steps
from solvers.linalg import eigvalsh

from .problem import (
    Hyper,
    Problem,
    Sizes,
    params_from_config,
    sample_data,
    sample_init,
    sample_init_gram,
    sample_teacher,
    sizes_from_config,
    sv_scale,
)

__all__ = [
    "Data",
    "weight_step",
    "gram_step",
    "gram_from_weights",
    "run_weight",
    "run_gram",
    "train",
    "simulate_config",
    "simulate_sizes",
    "spectrum_steps",
]


class Data(NamedTuple):
    """What the loss sees: teacher B (C×D), Σ̂ = XᵀX/P (D×D), Ẽ = EX/P (C×D), e2 = |E|²_F/P.
    Population loss: Σ̂ = I, Ẽ = 0, e2 = 0."""

    B: Float[Array, "C D"]
    S: Float[Array, "D D"]
    Et: Float[Array, "C D"]
    e2: Float[Array, ""]


# ------------------------------------------------------------------------------------------------------------
# One step, two forms
# ------------------------------------------------------------------------------------------------------------


def _residual(A: Array, data: Data, population: bool) -> Array:
    """Q = (B − A)Σ̂ + Ẽ (population: B − A)."""
    return data.B - A if population else (data.B - A) @ data.S + data.Et


def weight_step(
    V: Float[Array, "C N"], M: Float[Array, "N D"], data: Data, h: Hyper, frozen: bool, population: bool
) -> tuple[Array, Array]:
    """One GD step of the network: V ← V + aQMᵀ (unless frozen), M ← M + aVᵀQ."""
    a = h.lr * h.gamma0
    A = V @ M / (h.gamma0 * h.nu)
    Q = _residual(A, data, population)
    M_new = M + a * V.T @ Q
    V_new = V if frozen else V + a * Q @ M.T
    return V_new, M_new


def gram_step(
    hh: Float[Array, "C C"], k: Float[Array, "D D"], A: Float[Array, "C D"], data: Data, h: Hyper, frozen: bool,
    population: bool,
) -> tuple[Array, Array, Array]:
    """One GD step in Gram form (module docstring)."""
    a = h.lr * h.gamma0
    c = a * h.gamma0 * h.nu
    Q = _residual(A, data, population)
    QtA = Q.T @ A
    k_new = k + c * (QtA + QtA.T) + a**2 * Q.T @ hh @ Q
    if frozen:
        return hh, k_new, A + (h.lr / h.nu) * hh @ Q
    QAt = Q @ A.T
    h_new = hh + c * (QAt + QAt.T) + a**2 * Q @ k @ Q.T
    A_new = A + (h.lr / h.nu) * (Q @ k + hh @ Q) + a**2 * Q @ A.T @ Q
    return h_new, k_new, A_new


def gram_from_weights(V: Array, M: Array, h: Hyper) -> tuple[Array, Array, Array]:
    """(h, k, A) = (VVᵀ, MᵀM, VM/(γ0ν))."""
    return V @ V.T, M.T @ M, V @ M / (h.gamma0 * h.nu)


def _losses(A: Array, data: Data, h: Hyper, population: bool) -> tuple[Array, Array]:
    """Per-channel (train, test) losses of the map A."""
    C = A.shape[0]
    R = data.B - A
    test = 0.5 * (jnp.sum(R**2) / C + h.noise**2)
    if population:
        return test, test
    train = 0.5 * (jnp.sum((R @ data.S) * R) + 2.0 * jnp.sum(data.Et * R) + data.e2) / C
    return train, test


def _top_sv(gram: Float[Array, "n n"], count: int) -> Float[Array, " count"]:
    """The ``count`` largest singular values √λ of a Gram matrix, descending."""
    lam = eigvalsh(0.5 * (gram + gram.T))[::-1][:count]
    return jnp.sqrt(jnp.clip(lam, 0.0))


# ------------------------------------------------------------------------------------------------------------
# Runs
# ------------------------------------------------------------------------------------------------------------


def spectrum_steps(steps: int, every: int | None) -> np.ndarray:
    """The recorded steps (:func:`dmft.results.record_steps`)."""
    return record_steps(steps, every)


def _march(
    step: Any, observe: Any, loss: Any, state: Any, steps: int, rec: np.ndarray
) -> tuple[Array, Array, Array]:
    """Run T − 1 steps with ``lax.scan``, returning per-step (train, test) losses (T,) and observations at the
    recorded steps ``rec`` (which start at 0 and end at T − 1). One scan per gap between recorded steps."""

    def body(s: Any, _: None) -> tuple[Any, tuple[Array, Array]]:
        return step(s), loss(s)

    obs, trains, tests = [], [], []
    for t0, t1 in zip(rec[:-1], rec[1:], strict=True):
        obs.append(observe(state))
        state, (tr, te) = jax.lax.scan(body, state, None, length=int(t1 - t0))
        trains.append(tr)
        tests.append(te)
    obs.append(observe(state))
    tr, te = loss(state)
    trains.append(tr[None])
    tests.append(te[None])
    return jnp.concatenate(trains), jnp.concatenate(tests), jnp.stack(obs)


#: ``Sizes.width`` of a Gram-form run whose width N ≥ C + D is traced (Bartlett draw): compiled once for all N.
TRACED_WIDTH = -1


def _n_sv(sizes: Sizes) -> int:
    """min(N, D): the number of nonzero singular values (N ≥ C + D > D when the width is traced)."""
    return sizes.dim if sizes.width == TRACED_WIDTH else min(sizes.width, sizes.dim)


def _compiled_sizes(sizes: Sizes, form: str) -> Sizes:
    """The static sizes the twin is compiled for: the width drops out of the Gram form when N ≥ C + D."""
    if form == "gram" and sizes.width >= sizes.outputs + sizes.dim:
        return sizes._replace(width=TRACED_WIDTH)
    return sizes


def run_weight(
    V0: Array, M0: Array, data: Data, h: Hyper, sizes: Sizes, rec: tuple[int, ...], population: bool
) -> dict[str, Array]:
    """Weight-form run from (V0, M0): losses (T,) and singular values of M at ``rec`` (n_rec, min(N, D))."""
    n = _n_sv(sizes)

    def step(s: tuple[Array, Array]) -> tuple[Array, Array]:
        return weight_step(*s, data, h, sizes.frozen, population)

    def observe(s: tuple[Array, Array]) -> Array:
        M = s[1]
        return _top_sv(M.T @ M if sizes.dim <= sizes.width else M @ M.T, n)

    def loss(s: tuple[Array, Array]) -> tuple[Array, Array]:
        return _losses(s[0] @ s[1] / (h.gamma0 * h.nu), data, h, population)

    tr, te, sv = _march(step, observe, loss, (V0, M0), sizes.steps, np.asarray(rec))
    return {"train_loss": tr, "test_loss": te, "spectrum": sv}


def run_gram(
    G0: Array, data: Data, h: Hyper, sizes: Sizes, rec: tuple[int, ...], population: bool
) -> dict[str, Array]:
    """Gram-form run from ZᵀZ = G0: losses (T,) and singular values √eig(k) at ``rec``."""
    C, n = sizes.outputs, _n_sv(sizes)
    state = (G0[:C, :C], G0[C:, C:], G0[:C, C:] / (h.gamma0 * h.nu))

    def step(s: tuple[Array, Array, Array]) -> tuple[Array, Array, Array]:
        return gram_step(*s, data, h, sizes.frozen, population)

    def observe(s: tuple[Array, Array, Array]) -> Array:
        return _top_sv(s[1], n)

    def loss(s: tuple[Array, Array, Array]) -> tuple[Array, Array]:
        return _losses(s[2], data, h, population)

    tr, te, sv = _march(step, observe, loss, state, sizes.steps, np.asarray(rec))
    return {"train_loss": tr, "test_loss": te, "spectrum": sv}


def _problem_data(key: PRNGKeyArray, h: Hyper, sizes: Sizes, population: bool) -> Data:
    C, D, P = sizes.outputs, sizes.dim, sizes.samples
    kb, kd = jax.random.split(key)
    B = sample_teacher(kb, C, D, h.rho)
    if population:
        return Data(B, jnp.eye(D), jnp.zeros((C, D)), jnp.zeros(()))
    X, E = sample_data(kd, P, C, D, h.noise)
    return Data(B, X.T @ X / P, E @ X / P, jnp.sum(E**2) / P)


def train(
    key: PRNGKeyArray, h: Hyper, sizes: Sizes, rec: tuple[int, ...], form: str, population: bool
) -> dict[str, Array]:
    """One network: teacher, data and initialization drawn from ``key`` (split into teacher+data and init),
    trained in ``form`` (``gram`` or ``weight``)."""
    hv = jnp.asarray(h, dtype=jnp.float64)
    width = jnp.asarray(sizes.width, dtype=jnp.float64)
    return _train(key, hv, width, _compiled_sizes(sizes, form), tuple(int(r) for r in rec), form, population)


@partial(jax.jit, static_argnames=("sizes", "rec", "form", "population"))
def _train(key: PRNGKeyArray, hv: Array, width: Array, sizes: Sizes, rec: tuple[int, ...], form: str,
           population: bool) -> dict:
    """One network (``width``: N as a traced number, used where ``sizes.width`` is :data:`TRACED_WIDTH`)."""
    h = Hyper(*hv)
    k_data, k_init = jax.random.split(key)
    data = _problem_data(k_data, h, sizes, population)
    if form == "gram":
        traced = sizes.width == TRACED_WIDTH
        G0 = sample_init_gram(k_init, width if traced else sizes.width, sizes.outputs, sizes.dim, h.sigma,
                              h.sigma_w, bartlett=True if traced else None)
        return run_gram(G0, data, h, sizes, rec, population)
    V0, M0 = sample_init(k_init, sizes.width, sizes.outputs, sizes.dim, h.sigma, h.sigma_w)
    return run_weight(V0, M0, data, h, sizes, rec, population)


def _form(prob: Problem) -> str:
    f = prob.section.twin_form
    return ("gram" if prob.population else "weight") if f == "auto" else f


def simulate_sizes(
    prob: Problem, dim: int | None = None, seeds: int | None = None, seed: int | None = None
) -> dict[str, np.ndarray]:
    """Raw twin results at input dimension ``dim`` for ``seeds`` networks (vmapped over seeds, float64):
    ``train_loss``, ``test_loss`` (seed, t) and ``spectrum`` (seed, t_spec, i) in M⁰ units."""
    sizes = sizes_from_config(prob, dim)
    rec = tuple(int(r) for r in spectrum_steps(prob.steps, prob.every))
    n = prob.seeds if seeds is None else int(seeds)
    base = prob.seed if seed is None else int(seed)
    with jax.enable_x64(True):
        keys = jax.random.split(jax.random.key(base), n)
        hv = jnp.asarray(prob.hyper, dtype=jnp.float64)
        width = jnp.asarray(sizes.width, dtype=jnp.float64)
        form = _form(prob)
        static = _compiled_sizes(sizes, form)  # the Gram form compiles once for every width N ≥ C + D
        run = jax.vmap(lambda k: _train(k, hv, width, static, rec, form, prob.population))
        out = jax.device_get(run(keys))
    return {k: np.asarray(v) for k, v in out.items()}


def simulate_config(cfg: Any, progress: bool = False, section: Any = None, dim: int | None = None) -> Any:
    """The twin of one config as an xarray Dataset (module docstring; spectra in ``units``)."""
    del progress
    prob = params_from_config(cfg, section)
    res = simulate_sizes(prob, dim)
    return to_dataset(res, prob, sizes_from_config(prob, dim))


def _first_divergence(curves: list[np.ndarray], threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(diverged, divergence_step) over several loss curves (seed, t): the earliest step wins."""
    from dmft.results import divergence

    steps = np.stack([divergence(c, threshold)[1] for c in curves])
    big = np.iinfo(np.int64).max
    first = np.where(steps < 0, big, steps).min(axis=0)
    return first < big, np.where(first < big, first, -1)


def to_dataset(res: dict[str, np.ndarray], prob: Problem, sizes: Sizes) -> Any:
    """Package raw results on the common schema (dmft/results.py): losses on ``t``, spectra on ``t_spec``,
    edge (top singular value) and quantiles per seed; status variables per seed; values after a divergence NaN."""
    import xarray as xr

    from dmft.results import finalize, mask_after, status_variables

    from . import FAMILY

    T = prob.steps
    t = np.arange(T)
    rec = spectrum_steps(T, prob.every)
    levels = np.asarray(prob.section.quantiles, dtype=float)
    scale = sv_scale(prob.section.units, prob.hyper.nu)
    tr, te = res["train_loss"], res["test_loss"]
    diverged, step = _first_divergence([tr, te], prob.divergence_threshold)
    sv = scale * res["spectrum"]
    sv = mask_after(sv, step[:, None], rec, t_axis=1)
    finite = np.where(np.isfinite(sv), sv, np.nan)
    edge = finite[..., 0]
    with warnings.catch_warnings():  # all-NaN rows after a divergence are expected
        warnings.simplefilter("ignore", RuntimeWarning)
        quant = np.moveaxis(np.nanquantile(finite, levels, axis=-1), 0, -1)
    ds = xr.Dataset(
        {
            "train_loss": (("seed", "t"), mask_after(tr, step, t)),
            "test_loss": (("seed", "t"), mask_after(te, step, t)),
            "spectrum": (("seed", "t_spec", "i"), sv),
            "edge": (("seed", "t_spec"), edge),
            "quantiles": (("seed", "t_spec", "q"), quant),
            **status_variables(diverged, step, True, dims=("seed",)),
        },
        coords={"seed": np.arange(tr.shape[0]), "t": t, "t_spec": rec, "i": np.arange(sv.shape[-1]),
                "q": levels},
        attrs={"family": "extensive_output", "kind": "twin", "dim": sizes.dim, "width": sizes.width,
               "outputs": sizes.outputs, "samples": sizes.samples, "form": _form(prob),
               "units": prob.section.units, "readout": prob.section.readout},
    )
    return finalize(ds, FAMILY.long_names)
