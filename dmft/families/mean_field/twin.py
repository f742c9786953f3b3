r"""Finite-width twin of the mean-field family (conventions.md §4): a real width-N network on a fixed data set.

    h¹ = W⁰x/√D,   h^{ℓ+1} = W^ℓ φ(h^ℓ)/√N,   f = w·φ(h^L)/(γ0 N)

W⁰ (N×D), W^1..W^{L−1} (N×N) with iid N(0, σ²) entries, readout w ~ N(0, σ_w²); full-batch GD on the mean loss
½P⁻¹Σ(f − y)², every parameter updated by θ ← θ − ηγ0²N ∂L/∂θ (:func:`dmft.scaling.applied_lr`). Under NTK,
γ0 = γ̃0/√N (:func:`dmft.scaling.effective_gamma0` via :func:`.problem.gamma0_of`). The data set is the theory's
(:func:`.problem.make_dataset`); this module imports the problem definition only, never the theory.

The gradient is assembled from the backward fields g^ℓ = γ0N ∂f/∂h^ℓ (g^L = φ′(h^L)⊙w,
g^ℓ = φ′(h^ℓ)⊙W^{ℓT}g^{ℓ+1}/√N), which are also what the tangent kernel needs; ``tests/test_mean_field_twin.py``
checks the update against ``jax.grad``. Recorded at every step t (state θ(t)): the outputs f on all M = P + Q
points, the training loss, the equal-time kernels Φ^ℓ(t,t) = φ(h^ℓ)ᵀφ(h^ℓ)/N (ℓ = 1..L, all M points) and the
tangent kernel K_{μν} = Σ_{ℓ=0}^{L} (g^{ℓ+1}_μ·g^{ℓ+1}_ν/N) Φ^ℓ_{μν} (g^{L+1} ≡ 1, Φ^0 = K^x), which equals
γ0²N Σ_θ ∂f_μ/∂θ ∂f_ν/∂θ; with ``solver.sharpness`` also ``sharpness`` = λ_max(K[:P, :P]/P) per seed and
step. At the steps :func:`dmft.results.record_steps` (every ``simulate.spectrum_every`` steps and the last one):
the ``k`` largest singular values of each hidden matrix W^ℓ/√N (ℓ = 1..L−1), by block subspace iteration on MᵀM
(block k + 4, :data:`SUBSPACE_ITERS` iterations warm-started from the previous record's subspace, then a
Rayleigh–Ritz step). Orthonormalisation is Cholesky QR and the Ritz values come from ``eigvalsh``, both from
:mod:`solvers.linalg`: batched CPU LAPACK calls (``jnp.linalg.qr``/``svd`` under this vmap) hung XLA:CPU
(jax 0.10.1; N = 1024 with 4 seeds, no CPU use, never returning), the thread-pool deadlock described in
solvers/linalg.py.

**Divergence** (:mod:`dmft.results`): per seed, the first step whose train loss is not finite or exceeds
``solver.divergence_threshold`` × its initial value; every recorded value after it is NaN, a warning says how many
seeds diverged, and nothing raises on non-finite weights (the subspace iteration runs on them and its output is
masked).

When T·P ≤ N/4 the hidden matrices are kept as W^ℓ(0) + U Vᵀ with the P rank-one updates of each step appended
to U, V (a step then reads W^ℓ(0) twice instead of reading and writing it four times); otherwise they are dense.
"""

from __future__ import annotations

import math
import warnings
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jaxtyping import Array, Float, PRNGKeyArray

import dmft._jax  # noqa: F401  (refuses known-bad JAX versions)
from solvers.linalg import cholesky, eigvalsh

from ...config import Config
from ...results import default_every, divergence, mask_after, record_steps, status_variables
from ...scaling import applied_lr
from .problem import (
    MeanFieldData,
    PopulationPoints,
    common_coords,
    gamma0_of,
    kernel_alignment,
    make_dataset,
    population_points,
    population_test_loss,
    stability_sharpness,
)
from .problem import activation as _activation

__all__ = ["TwinSpec", "init_network", "hidden_weights", "forward_fields", "manual_gradients", "top_singular_values",
           "train_network", "simulate_config", "twin_dataset", "SUBSPACE_ITERS"]

SUBSPACE_ITERS = 12
_MEMORY_BUDGET = 2e9  # bytes of weights (×3 for temporaries) per vmapped chunk of seeds


class TwinSpec(NamedTuple):
    width: int
    depth: int
    activation: str
    steps: int
    every: int  # record singular values every this many steps (and at the last step T − 1)
    k_top: int  # number of top singular values per hidden matrix
    n_train: int
    factored: bool  # hidden matrices kept as W(0) + U Vᵀ (rank P per step) instead of dense updates


def init_network(key: PRNGKeyArray, d: int, spec: TwinSpec, sigma: Array, sigma_w: Array) -> dict[str, Array]:
    """W⁰ (N, D), hidden W^ℓ(0) (L−1, N, N), readout w (N,); factored: accumulated updates U, V (L−1, N, TP)."""
    k0, k1, k2 = jax.random.split(key, 3)
    n, L = spec.width, spec.depth
    rank = spec.steps * spec.n_train if spec.factored else 0
    return {
        "W0": sigma * jax.random.normal(k0, (n, d)),
        "Wh": sigma * jax.random.normal(k1, (L - 1, n, n)),
        "U": jnp.zeros((L - 1, n, rank)),
        "V": jnp.zeros((L - 1, n, rank)),
        "w": sigma_w * jax.random.normal(k2, (n,)),
    }


def hidden_weights(params: dict[str, Array]) -> Float[Array, "Lm1 N N"]:
    """The hidden matrices W^ℓ = W^ℓ(0) + U Vᵀ (dense)."""
    return params["Wh"] + jnp.einsum("lir,ljr->lij", params["U"], params["V"])


def _apply(params: dict[str, Array], i: int, a: Array) -> Array:
    """a W^{i+1}ᵀ for rows a (·, N)."""
    return a @ params["Wh"][i].T + (a @ params["V"][i]) @ params["U"][i].T


def _apply_t(params: dict[str, Array], i: int, b: Array) -> Array:
    """b W^{i+1} for rows b (·, N)."""
    return b @ params["Wh"][i] + (b @ params["U"][i]) @ params["V"][i].T


def forward_fields(
    params: dict[str, Array], x: Float[Array, "M D"], spec: TwinSpec, gamma0: Array
) -> tuple[Array, Array, Array]:
    """Pre-activations h^ℓ (L, M, N), backward fields g^ℓ (L, M, N) and outputs f (M,)."""
    phi = _activation(spec.activation)
    dphi = jnp.vectorize(jax.grad(phi))
    n = spec.width
    hs = [x @ params["W0"].T / math.sqrt(x.shape[1])]
    for i in range(spec.depth - 1):
        hs.append(_apply(params, i, phi(hs[-1])) / math.sqrt(n))
    f = phi(hs[-1]) @ params["w"] / (gamma0 * n)
    gs = [dphi(hs[-1]) * params["w"][None, :]]
    for i in reversed(range(spec.depth - 1)):
        gs.append(dphi(hs[i]) * (_apply_t(params, i, gs[-1]) / math.sqrt(n)))
    return jnp.stack(hs), jnp.stack(gs[::-1]), f


def manual_gradients(
    params: dict[str, Array], x: Array, delta: Array, hs: Array, gs: Array, spec: TwinSpec, gamma0: Array
) -> dict[str, Array]:
    """∂L/∂θ of the mean loss from the fields: −P⁻¹Σ_μ Δ_μ ∂f_μ/∂θ with ∂f/∂W^ℓ = g^{ℓ+1}φ(h^ℓ)ᵀ/(γ0N√N) etc.

    ``delta`` has zeros on the non-training points (they do not drive learning). Dense: "Wh" is the gradient
    of the hidden matrices; factored: "U", "V" hold its rank-P factors (gradient = U Vᵀ) and "Wh" is zero.
    """
    phi = _activation(spec.activation)
    n, d, p = spec.width, x.shape[1], spec.n_train
    scale = -1.0 / (p * gamma0 * n)
    wd = delta[:, None]
    left = scale * gs[1:, :p] * wd[None, :p] / math.sqrt(n)  # (L−1, P, N)
    right = phi(hs[:-1, :p])
    grads = {
        "W0": scale * (gs[0] * wd).T @ x / math.sqrt(d),
        "w": scale * (phi(hs[-1]) * wd).sum(0),
    }
    if spec.factored:
        grads.update(Wh=jnp.zeros_like(params["Wh"]), U=left.transpose(0, 2, 1), V=right.transpose(0, 2, 1))
    else:
        grads.update(Wh=jnp.einsum("lmi,lmj->lij", left, right), U=params["U"], V=params["V"])
    return grads


def _orthonormalize(x: Float[Array, "N b"]) -> Float[Array, "N b"]:
    """Orthonormal basis of span(x) by two passes of Cholesky QR (stable for the well-conditioned blocks here)."""
    for _ in range(2):
        r = cholesky(x.T @ x + 1e-300 * jnp.eye(x.shape[1]))
        x = jax.scipy.linalg.solve_triangular(r, x.T, lower=True).T
    return x


def top_singular_values(
    params: dict[str, Array], i: int, block: Float[Array, "N b"], k: int, iters: int
) -> tuple[Array, Array]:
    """The k largest singular values of W^{i+1}/√N and the refined right subspace (block subspace iteration)."""
    n = params["Wh"].shape[-1]

    def mult(q: Array) -> Array:
        return _apply(params, i, q.T).T / math.sqrt(n)

    def mult_t(q: Array) -> Array:
        return _apply_t(params, i, q.T).T / math.sqrt(n)

    def body(_: int, q: Array) -> Array:
        return _orthonormalize(mult_t(mult(q)))

    q = jax.lax.fori_loop(0, iters, body, _orthonormalize(block))
    mq = mult(q)
    sv = jnp.sqrt(jnp.maximum(eigvalsh(mq.T @ mq)[::-1], 0.0))
    return sv[:k], q


def _train_one(
    key: PRNGKeyArray, x: Array, y: Array, hp: tuple[Array, ...], spec: TwinSpec
) -> dict[str, Array]:
    lr, gamma0, sigma, sigma_w = hp
    kn, kb = jax.random.split(key)
    params = init_network(kn, x.shape[1], spec, sigma, sigma_w)
    rate = applied_lr(lr, gamma0, spec.width)
    phi = _activation(spec.activation)
    n, m_pts, L, p = spec.width, x.shape[0], spec.depth, spec.n_train
    kx = x @ x.T / x.shape[1]
    train = (jnp.arange(m_pts) < p).astype(float)
    y_pad = jnp.concatenate([y, jnp.zeros(m_pts - y.shape[0])])
    blocks = jax.random.normal(kb, (max(L - 1, 1), n, spec.k_top + 4))

    def step(params: dict[str, Array], t: Array) -> tuple[dict[str, Array], dict[str, Array]]:
        hs, gs, f = forward_fields(params, x, spec, gamma0)
        delta = (y_pad - f) * train
        ph = phi(hs)
        phis = jnp.einsum("lmi,lni->lmn", ph, ph) / n  # Φ^1..Φ^L
        gg = jnp.einsum("lmi,lni->lmn", gs, gs) / n  # G^1..G^L
        ntk = gg[0] * kx + jnp.sum(gg[1:] * phis[:-1], axis=0) + phis[-1]
        grads = manual_gradients(params, x, delta, hs, gs, spec, gamma0)
        keep = t < spec.steps - 1  # θ(T − 1) is the last state: later (padding) steps change nothing
        new = {k: jnp.where(keep, params[k] - rate * grads[k], params[k]) for k in ("W0", "w")}
        new["Wh"] = params["Wh"] if spec.factored else jnp.where(keep, params["Wh"] - rate * grads["Wh"], params["Wh"])
        if spec.factored:
            col = jnp.minimum(t, spec.steps - 1) * p
            for k, g in (("U", -rate * grads["U"]), ("V", grads["V"])):
                new[k] = jnp.where(keep, jax.lax.dynamic_update_slice_in_dim(params[k], g, col, axis=2), params[k])
        else:
            new.update(U=params["U"], V=params["V"])
        rec = {"f": f, "train_loss": 0.5 * jnp.sum(delta**2) / p, "Phi_diag": phis, "ntk": ntk}
        return new, rec

    def top_sv(params: dict[str, Array], blocks: Array) -> tuple[Array, Array]:
        if L > 1:
            return _all_top_sv(params, blocks, spec)
        return jnp.full((1, spec.k_top), jnp.nan), blocks  # no hidden matrix (sliced off; zero-size breaks lax.map)

    def chunk(carry: tuple, t0: Array) -> tuple[tuple, tuple]:
        params, blocks = carry
        sv, blocks = top_sv(params, blocks)
        params, rec = jax.lax.scan(step, params, t0 + jnp.arange(spec.every))
        return (params, blocks), (sv, rec)

    n_chunks = -(-spec.steps // spec.every)  # chunk starts 0, k, 2k, … ≤ T − 1
    (last, blocks), (sv, rec) = jax.lax.scan(chunk, (params, blocks), jnp.arange(n_chunks) * spec.every)
    rec = jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:])[: spec.steps], rec)
    if (spec.steps - 1) % spec.every:  # the last step T − 1 is recorded too (dmft.results.record_steps)
        sv_last, _ = top_sv(last, blocks)
        sv = jnp.concatenate([sv, sv_last[None]])
    rec["top_sv"] = sv
    return rec


def _all_top_sv(params: dict[str, Array], blocks: Array, spec: TwinSpec) -> tuple[Array, Array]:
    outs = [top_singular_values(params, i, blocks[i], spec.k_top, SUBSPACE_ITERS) for i in range(spec.depth - 1)]
    return jnp.stack([o[0] for o in outs]), jnp.stack([o[1] for o in outs])


@partial(jax.jit, static_argnames=("spec", "batch"))
def _train_seeds(keys: Array, x: Array, y: Array, hp: tuple[Array, ...], spec: TwinSpec, batch: int) -> dict:
    return jax.lax.map(lambda k: _train_one(k, x, y, hp, spec), keys, batch_size=batch)


def _seed_batch(spec: TwinSpec, seeds: int) -> int:
    per_seed = 3 * 8 * max(spec.depth - 1, 1) * spec.width**2
    return int(max(1, min(seeds, _MEMORY_BUDGET // per_seed)))


def train_network(
    x: Float[Array, "P D"], y: Float[Array, " P"], x_test: Float[Array, "Q D"] | None = None, *, width: int,
    depth: int, activation: str = "linear", gamma0: float, sigma: float = 1.0, sigma_w: float = 1.0, lr: float,
    steps: int, key: PRNGKeyArray, seeds: int = 1, record_every: int | None = None, k_top: int = 4,
) -> dict[str, np.ndarray]:
    """Train ``seeds`` width-N networks (vmapped in memory-bounded chunks) on (x, y); x_test only observed.

    Returns numpy arrays with a leading seed axis: ``f`` (seed, T, M), ``train_loss`` (seed, T), ``Phi_diag``
    (seed, T, L, M, M) for ℓ = 1..L, ``ntk`` (seed, T, M, M), ``top_sv`` (seed, n_rec, L−1, k_top) at the steps
    ``t_sv`` = :func:`dmft.results.record_steps` (steps, record_every). ``gamma0`` is the effective γ0 (NTK mapping
    is the caller's job: :func:`.problem.gamma0_of`). Nothing is masked here (see :func:`twin_dataset`).
    """
    x = jnp.asarray(x, dtype=float)
    xt = jnp.zeros((0, x.shape[1])) if x_test is None else jnp.asarray(x_test, dtype=float)
    every = max(1, min(record_every or default_every(steps), steps - 1))
    t_sv = record_steps(steps, every)  # = record_steps(steps, record_every): 0, k, 2k, … and T − 1
    factored = steps * x.shape[0] <= width // 4
    spec = TwinSpec(int(width), int(depth), activation, int(steps), int(every), int(k_top), int(x.shape[0]),
                    bool(factored))
    hp = tuple(jnp.asarray(v, dtype=float) for v in (lr, gamma0, sigma, sigma_w))
    keys = jax.random.split(key, seeds)
    out = _train_seeds(keys, jnp.concatenate([x, xt]), jnp.asarray(y, dtype=float), hp, spec,
                       _seed_batch(spec, seeds))
    out = {k: np.asarray(v) for k, v in out.items()}
    out["top_sv"] = out["top_sv"][:, :, : depth - 1]
    out["t_sv"] = t_sv
    return out


def simulate_config(cfg: Config, progress: bool = False) -> xr.Dataset:
    """Train ``simulate.seeds`` networks of width ``simulate.width`` on the config's data set."""
    data = make_dataset(cfg)
    m, s = cfg.model, cfg.simulate
    g0 = gamma0_of(cfg)
    aux = population_points(cfg, data)
    x_obs = jnp.concatenate([data.x_test, aux.x]) if aux is not None else data.x_test
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=1, desc=f"simulate N={s.width}, {s.seeds} seeds", unit="run")
    res = train_network(
        data.x_train, data.y_train, x_obs, width=s.width, depth=m.depth, activation=m.activation, gamma0=g0,
        sigma=m.sigma, sigma_w=m.sigma_readout, lr=cfg.optim.lr, steps=cfg.optim.steps,
        key=jax.random.key(s.seed), seeds=s.seeds, record_every=s.spectrum_every, k_top=cfg.solver.max_outliers,
    )
    if bar is not None:
        bar.update(1)
        bar.close()
    return twin_dataset(res, cfg, data, g0, aux)


def twin_dataset(res: dict, cfg: Config, data: MeanFieldData, g0: float, aux: PopulationPoints | None) -> xr.Dataset:
    """Dataset of the finite-width twin: the theory's names with a ``seed`` dim; divergence flagged per seed
    (:func:`dmft.results.divergence` with ``solver.divergence_threshold``), values after it NaN (non-finite
    values before it are impossible: a non-finite loss is a divergence)."""
    P, Q = data.x_train.shape[0], data.x_test.shape[0]
    M = P + Q
    T = cfg.optim.steps
    t = np.arange(T)
    y = np.asarray(data.y_train)
    diverged, k = divergence(res["train_loss"], cfg.solver.divergence_threshold)

    def masked(a: np.ndarray, t_axis: int = 1, steps: np.ndarray = t) -> np.ndarray:
        return mask_after(a, k.reshape((-1,) + (1,) * (a.ndim - 2)), steps, t_axis=t_axis)

    f = masked(res["f"])
    ntk = masked(res["ntk"][:, :, :M, :M])
    ds = xr.Dataset(
        {
            "train_loss": (("seed", "t"), masked(res["train_loss"])),
            "f": (("seed", "t", "point"), f[:, :, :M]),
            "ntk": (("seed", "t", "point", "point2"), ntk),
            "ntk_alignment": (("seed", "t"), kernel_alignment(ntk[:, :, :P, :P], y)),
            "Phi_diag": (("seed", "layer_phi", "t", "point", "point2"),
                         masked(res["Phi_diag"][:, :, :, :M, :M]).transpose(0, 2, 1, 3, 4)),
            **status_variables(diverged, k, True, dims=("seed",)),
            "twin_width": ((), int(cfg.simulate.width)),  # not "width": that is the sweep axis of simulate.width
        },
        coords={**common_coords(cfg, data), "seed": np.arange(f.shape[0])},
    )
    if Q > 0:
        ds["test_loss"] = (("seed", "t"), 0.5 * np.mean((f[:, :, P:M] - np.asarray(data.y_test)) ** 2, axis=-1))
    elif aux is not None:
        ds["test_loss"] = (("seed", "t"), population_test_loss(f, data, aux))
    if cfg.model.depth > 1 and res["top_sv"].shape[2] > 0:
        ds.coords["layer"] = np.arange(1, cfg.model.depth)
        ds.coords["t_spec"] = res["t_sv"]
        ds.coords["k"] = np.arange(res["top_sv"].shape[-1])
        ds["top_sv"] = (("seed", "t_spec", "layer", "k"), masked(res["top_sv"], steps=res["t_sv"]))
        ds["bulk_edge"] = ("layer", np.full(cfg.model.depth - 1, 2 * cfg.model.sigma))
    if cfg.solver.sharpness:  # λ_max(K(t)/P) of each network's own tangent kernel, every step
        ds["sharpness"] = (("seed", "t"), stability_sharpness(ntk, P))
        ds["sharpness"].attrs["note"] = f"GD is linearly stable while lr·sharpness < 2 (2/lr = {2 / cfg.optim.lr:.4g})"
    ds.attrs.update(width=cfg.simulate.width, n_train=P, n_test=Q, gamma0_effective=g0)
    if diverged.any():
        warnings.warn(f"mean_field twin diverged for {int(diverged.sum())} of {diverged.size} seeds (first at step "
                      f"{int(k[diverged].min())}, lr = {cfg.optim.lr}): values after it are NaN, see 'diverged'",
                      RuntimeWarning, stacklevel=3)
    return ds
