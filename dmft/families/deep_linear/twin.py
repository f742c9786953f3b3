r"""Finite-width twin of the proportional deep linear network (conventions.md §3), in JAX + optax.

A real network is trained: h¹ = W⁰x/√D, h^{ℓ+1} = W^ℓh^ℓ/√N, f(x) = √D w·h^L/(γ0N), mean squared loss, plain SGD
(optax) with step ηγ0²N on every parameter, full batch (P = αD fixed samples) or one-pass SGD (a fresh batch of
B = α_B·D samples per step). Seeds are vmapped; time is a ``lax.scan``. It records

* ``train_loss`` (loss on the training set, or on the step's batch for one-pass SGD) and ``test_loss``
  = ½(|β − β*|²/D + σ_ε²), exact for the effective predictor β = (D/(γ0N)) M⁰ᵀ⋯M^{L−1}ᵀw;
* ``spectrum``: every singular value of each normalised weight matrix M⁰ = W⁰/√D, M^ℓ = W^ℓ/√N at the steps
  ``t_spec`` (:func:`.problem.spectrum_steps`: every ``simulate.spectrum_every`` steps, by default about 5 times
  per run, and the last one), and ``sharpness``, λ_max of the tangent kernel, at the same steps.

A diverging network never stops the run: its divergence step (configured ``solver.divergence_threshold``) is
recorded per seed, later values are NaN, and matrices with non-finite entries are not decomposed.
"""

from __future__ import annotations

import math
import warnings
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import xarray as xr
from jaxtyping import Array, Float, PRNGKeyArray

import dmft._jax  # noqa: F401  (refuses known-bad JAX versions)

from ...config import Config
from ...results import NOT_DIVERGED, divergence, finalize, mask_after, record_steps, status_text, status_variables
from ...scaling import applied_lr, effective_gamma0, parameterization_code
from .problem import LONG_NAMES, spectrum_every

__all__ = [
    "TwinSpec", "spec_from_config", "init_network", "forward", "forward_layers", "effective_beta", "train",
    "simulate_config",
]


class TwinSpec(NamedTuple):
    """Static sizes and hyperparameters of one finite-width run."""

    dim: int  # D
    width: int  # N
    depth: int  # L
    samples: int  # P (full batch) or B (one-pass SGD batch)
    sgd: bool
    steps: int  # T
    spectrum_every: int
    record_spectra: bool
    lr: float
    gamma0: float  # effective γ0
    sigma: float
    sigma_readout: float
    noise: float
    teacher_variance: float


def spec_from_config(cfg: Config) -> TwinSpec:
    m, d, o, s = cfg.model, cfg.data, cfg.optim, cfg.simulate
    D = s.dim
    N = max(1, round(m.width_ratio * D))
    sgd = o.batch_ratio is not None
    samples = max(1, round((o.batch_ratio if sgd else d.alpha) * D))
    every = spectrum_every(cfg)
    g = effective_gamma0(m.gamma0, m.width_ratio, parameterization_code(m.parameterization))
    return TwinSpec(D, N, m.depth, samples, sgd, o.steps, every, s.record_spectra, o.lr, float(g), m.sigma,
                    m.sigma_readout, d.noise, d.teacher_variance)


def init_network(key: PRNGKeyArray, spec: TwinSpec) -> dict[str, Array]:
    """W⁰ (N×D), hidden W^1..W^{L−1} stacked (L−1, N, N), readout w (N,): iid N(0, σ²) and N(0, σ_w²)."""
    k0, k1, k2 = jax.random.split(key, 3)
    N, D, L = spec.width, spec.dim, spec.depth
    return {
        "W0": spec.sigma * jax.random.normal(k0, (N, D)),
        "Wh": spec.sigma * jax.random.normal(k1, (L - 1, N, N)),
        "w": spec.sigma_readout * jax.random.normal(k2, (N,)),
    }


def forward_layers(params: dict[str, Array], x: Float[Array, "b D"], spec: TwinSpec) -> Float[Array, " b"]:
    """f(x) = √D w·h^L/(γ0N), layer by layer (cost O(b·N·(D + L·N)))."""
    h = x @ params["W0"].T / math.sqrt(spec.dim)
    for ell in range(spec.depth - 1):
        h = h @ params["Wh"][ell].T / math.sqrt(spec.width)
    return math.sqrt(spec.dim) * (h @ params["w"]) / (spec.gamma0 * spec.width)


def forward(params: dict[str, Array], x: Float[Array, "b D"], spec: TwinSpec) -> Float[Array, " b"]:
    """The same function f(x) = β(θ)·x/√D evaluated in the cheap association order (cost O(b·D + N·D + L·N²)).

    For a linear network this is an identity, so the loss, its gradients (by autodiff) and the SGD trajectory
    are those of :func:`forward_layers`; the tests check the two agree.
    """
    return x @ effective_beta(params, spec) / math.sqrt(spec.dim)


def effective_beta(params: dict[str, Array], spec: TwinSpec) -> Float[Array, " D"]:
    """β with f(x) = β·x/√D: β = (D/(γ0N)) M⁰ᵀM¹ᵀ⋯M^{L−1}ᵀ w."""
    g = params["w"]
    for ell in reversed(range(spec.depth - 1)):
        g = params["Wh"][ell].T @ g / math.sqrt(spec.width)
    return spec.dim * (params["W0"].T @ g / math.sqrt(spec.dim)) / (spec.gamma0 * spec.width)


def _singular_values(params: dict[str, Array], spec: TwinSpec) -> Float[Array, "L N"]:
    """All singular values of M⁰ = W⁰/√D and M^ℓ = W^ℓ/√N, padded with NaN to N per layer (NaN for a matrix with
    a non-finite entry: a diverged network)."""
    N = spec.width
    if not spec.record_spectra:
        return jnp.zeros((spec.depth, 0))
    m0 = params["W0"] / math.sqrt(spec.dim)
    s0 = _sv_from_gram(m0.T @ m0 if spec.dim <= N else m0 @ m0.T)
    s0 = jnp.concatenate([s0, jnp.full(N - s0.shape[0], jnp.nan)]) if s0.shape[0] < N else s0
    rows = [s0]
    if spec.depth > 1:
        mh = params["Wh"] / math.sqrt(N)
        rows += list(_sv_from_gram(jnp.einsum("lij,lkj->lik", mh, mh)))
    return jnp.stack(rows)


def _eigvalsh(gram: Float[Array, "n n"]) -> Float[Array, " n"]:
    """Eigenvalues of a symmetric matrix. On CPU, XLA's eigh inside a vmapped scan is ~10× slower than LAPACK
    called directly, so the CPU path calls NumPy through a host callback (it batches over vmapped axes)."""
    if jax.default_backend() != "cpu":
        return jnp.linalg.eigvalsh(gram)
    out = jax.ShapeDtypeStruct(gram.shape[:-1], gram.dtype)
    return jax.pure_callback(np.linalg.eigvalsh, out, gram, vmap_method="expand_dims")


def _sv_from_gram(gram: Float[Array, "*b n n"]) -> Float[Array, "*b n"]:
    """Singular values, largest first, as square roots of the eigenvalues of MMᵀ (several times faster than an
    SVD; relative accuracy ~1e-8 for singular values above 1e-8 × the largest, ample for spectra).

    A Gram with a non-finite entry (a diverged network) is never handed to LAPACK, which fails on it ("Eigenvalues
    did not converge"): the identity is decomposed in its place and its singular values are NaN.
    """
    ok = jnp.all(jnp.isfinite(gram), axis=(-2, -1))
    safe = jnp.where(ok[..., None, None], gram, jnp.eye(gram.shape[-1], dtype=gram.dtype))
    sv = jnp.sqrt(jnp.clip(_eigvalsh(safe), 0.0))[..., ::-1]
    return jnp.where(ok[..., None], sv, jnp.nan)


def tangent_kernel_top_eigenvalue(
    params: dict[str, Array], x: Float[Array, "P D"], spec: TwinSpec, iterations: int = 40
) -> Float[Array, ""]:
    """λ_max of the effective tangent kernel K̃ = γ0²N JJᵀ/P (J = ∂f(x_μ)/∂θ), by power iteration with
    jvp/vjp. GD on the mean loss is linearly stable while η λ_max(K̃) < 2 (spectra.md §10)."""
    f = lambda prm: forward(prm, x, spec)  # noqa: E731
    _, vjp = jax.vjp(f, params)
    scale = spec.gamma0**2 * spec.width / x.shape[0]

    def apply(v: Array) -> Array:
        (cot,) = vjp(v)
        return scale * jax.jvp(f, (params,), (cot,))[1]

    def it(v: Array, _: None) -> tuple[Array, None]:
        w = apply(v)
        return w / jnp.linalg.norm(w), None

    v0 = jnp.ones(x.shape[0]) / math.sqrt(x.shape[0])
    v, _ = jax.lax.scan(it, v0, None, length=iterations)
    return v @ apply(v)


def _make_data(key: PRNGKeyArray, n: int, beta_star: Array, spec: TwinSpec) -> tuple[Array, Array]:
    kx, ke = jax.random.split(key)
    x = jax.random.normal(kx, (n, spec.dim))
    y = x @ beta_star / math.sqrt(spec.dim) + spec.noise * jax.random.normal(ke, (n,))
    return x, y


_HYPER = ("lr", "gamma0", "sigma", "sigma_readout", "noise", "teacher_variance")


def train(key: PRNGKeyArray, spec: TwinSpec) -> dict[str, Array]:
    """Train one network; returns ``train_loss``, ``test_loss`` (T,), ``spectrum`` (n_spec, L, N).

    Only the sizes in ``spec`` are compiled in: the hyperparameters (η, γ0, σ, σ_w, σ_ε, ρ*) are traced, so a
    sweep over them at fixed sizes reuses one compiled program.
    """
    sizes = spec._replace(**{k: 0.0 for k in _HYPER})
    hyper = jnp.asarray([getattr(spec, k) for k in _HYPER], dtype=float)
    return _train(key, hyper, sizes)


@partial(jax.jit, static_argnames=("sizes",))
def _train(key: PRNGKeyArray, hyper: Float[Array, " 6"], sizes: TwinSpec) -> dict[str, Array]:
    spec = sizes._replace(**{k: hyper[i] for i, k in enumerate(_HYPER)})
    k_teacher, k_net, k_data = jax.random.split(key, 3)
    beta_star = jax.random.normal(k_teacher, (spec.dim,))
    beta_star = beta_star * jnp.sqrt(spec.teacher_variance * spec.dim) / jnp.linalg.norm(beta_star)
    params = init_network(k_net, spec)
    opt = optax.sgd(applied_lr(spec.lr, spec.gamma0, spec.width))
    opt_state = opt.init(params)
    x_train, y_train = _make_data(k_data, spec.samples, beta_star, spec)

    def loss_fn(prm: dict[str, Array], x: Array, y: Array) -> Array:
        return 0.5 * jnp.mean((forward(prm, x, spec) - y) ** 2)

    def test_loss(prm: dict[str, Array]) -> Array:
        b = effective_beta(prm, spec)
        return 0.5 * (jnp.sum((b - beta_star) ** 2) / spec.dim + spec.noise**2)

    def step(carry: tuple, t: Array) -> tuple[tuple, tuple[Array, Array]]:
        prm, st = carry
        if spec.sgd:
            x, y = _make_data(jax.random.fold_in(k_data, t), spec.samples, beta_star, spec)
        else:
            x, y = x_train, y_train
        loss, grads = jax.value_and_grad(loss_fn)(prm, x, y)
        updates, st = opt.update(grads, st, prm)
        return (optax.apply_updates(prm, updates), st), (loss, test_loss(prm))

    def observe(prm: dict[str, Array]) -> tuple[Array, Array]:
        x_obs = x_train if not spec.sgd else _make_data(k_data, spec.samples, beta_star, spec)[0]
        return _singular_values(prm, spec), tangent_kernel_top_eigenvalue(prm, x_obs, spec)

    def segment(carry: tuple, t0: Array) -> tuple[tuple, tuple]:
        obs = observe(carry[0])
        carry, losses = jax.lax.scan(step, carry, t0 + jnp.arange(spec.spectrum_every))
        return carry, (losses, obs)

    # observe at 0, k, …, mk (m = ⌊(T − 1)/k⌋) and at T − 1: the schedule of :func:`spectrum_steps`
    n_updates = spec.steps - 1
    n_seg = n_updates // spec.spectrum_every
    carry = (params, opt_state)
    carry, (seg_losses, (seg_sv, seg_sharp)) = jax.lax.scan(segment, carry, jnp.arange(n_seg) * spec.spectrum_every)
    mid_sv, mid_sharp = observe(carry[0])
    tail = n_updates - n_seg * spec.spectrum_every
    carry, tail_losses = jax.lax.scan(step, carry, n_seg * spec.spectrum_every + jnp.arange(tail))
    final_params = carry[0]
    if spec.sgd:
        xf, yf = _make_data(jax.random.fold_in(k_data, n_updates), spec.samples, beta_star, spec)
    else:
        xf, yf = x_train, y_train
    last = (loss_fn(final_params, xf, yf)[None], test_loss(final_params)[None])
    train_l = jnp.concatenate([seg_losses[0].reshape(-1), tail_losses[0], last[0]])
    test_l = jnp.concatenate([seg_losses[1].reshape(-1), tail_losses[1], last[1]])
    obs_sv, obs_sharp = [seg_sv, mid_sv[None]], [seg_sharp, mid_sharp[None]]
    if tail > 0:
        final_sv, final_sharp = observe(final_params)
        obs_sv.append(final_sv[None])
        obs_sharp.append(final_sharp[None])
    spectrum = jnp.concatenate(obs_sv, axis=0)
    sharpness = jnp.concatenate(obs_sharp)
    return {"train_loss": train_l, "test_loss": test_l, "spectrum": spectrum, "sharpness": sharpness}


def spectrum_steps(spec: TwinSpec) -> np.ndarray:
    """Steps at which :func:`train` records spectra and sharpness: :func:`dmft.results.record_steps` with stride
    ``spec.spectrum_every`` (0, k, 2k, … and T − 1; the same as :func:`.problem.spectrum_steps` of the config)."""
    return record_steps(spec.steps, spec.spectrum_every)


def simulate_config(cfg: Config, progress: bool = False) -> xr.Dataset:
    """Train ``simulate.seeds`` networks (vmapped, in chunks of up to 8 with a progress bar) at D = simulate.dim.

    A network whose loss becomes non-finite or exceeds ``solver.divergence_threshold`` × its initial value is
    flagged (``diverged``, ``divergence_step`` per seed), its later values are NaN, and one warning says so.
    """
    spec = spec_from_config(cfg)
    seeds = cfg.simulate.seeds
    keys = jax.random.split(jax.random.key(cfg.simulate.seed), seeds)
    chunk = min(seeds, 8)
    n_chunks = -(-seeds // chunk)
    pad = n_chunks * chunk - seeds
    keys = jnp.concatenate([keys, keys[:pad]]) if pad else keys
    run = jax.vmap(lambda k: train(k, spec))
    outs = []
    it = range(n_chunks)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc=f"simulate D={spec.dim} N={spec.width}", unit="chunk")
    for c in it:
        outs.append(jax.device_get(run(keys[c * chunk : (c + 1) * chunk])))
    res = {k: np.concatenate([o[k] for o in outs])[:seeds] for k in outs[0]}
    ds = to_dataset(res, spec, cfg.solver.divergence_threshold)
    if cfg.solver.sharpness:  # Lanczos λ_max of K̃ at every step, own networks (twin_kernel.py)
        from .twin_kernel import simulate_kernel

        ds = ds.merge(simulate_kernel(cfg))
    return ds


def _first_divergence(curves: list[np.ndarray], threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(diverged, divergence_step) per seed over several (seed, t) loss curves: the earliest step wins."""
    steps = np.stack([divergence(c, threshold)[1] for c in curves])
    big = np.iinfo(np.int64).max
    first = np.where(steps < 0, big, steps).min(axis=0)
    return first < big, np.where(first < big, first, NOT_DIVERGED)


def to_dataset(res: dict[str, np.ndarray], spec: TwinSpec, divergence_threshold: float = 1e6) -> xr.Dataset:
    """Package raw results on the common schema (:mod:`dmft.results`): losses on (``seed``, ``t``), spectra and
    sharpness on (``seed``, ``t_spec``); status per seed; every value after a seed's divergence step NaN."""
    T = spec.steps
    t = np.arange(T)
    rec = spectrum_steps(spec)
    train_l, test_l = res["train_loss"], res["test_loss"]
    diverged, step = _first_divergence([train_l, test_l], divergence_threshold)
    ds = xr.Dataset(
        {
            "train_loss": (("seed", "t"), mask_after(train_l, step, t)),
            "test_loss": (("seed", "t"), mask_after(test_l, step, t)),
            "spectrum": (("seed", "t_spec", "layer", "i"),
                         mask_after(res["spectrum"], step[:, None, None], rec, t_axis=1)),
            "sharpness": (("seed", "t_spec"), mask_after(res["sharpness"], step, rec)),
            **status_variables(diverged, step, True, dims=("seed",)),
        },
        coords={
            "seed": np.arange(train_l.shape[0]),
            "t": t,
            "t_spec": rec,
            "layer": np.arange(spec.depth),
            "i": np.arange(res["spectrum"].shape[-1]),
        },
        attrs={"family": "deep_linear", "kind": "twin", "dim": spec.dim, "width": spec.width,
               "samples": spec.samples},
    )
    ds["sharpness"].attrs["note"] = f"GD is linearly stable while lr·sharpness < 2 (2/lr = {2 / spec.lr:.4g})"
    ds["spectrum"].attrs["note"] = "singular values of M⁰ = W⁰/√D (layer 0, NaN-padded) and M^ℓ = W^ℓ/√N"
    if diverged.any():
        warnings.warn(f"deep_linear twin: {status_text(ds)}; values after a seed's divergence step are NaN",
                      RuntimeWarning, stacklevel=3)
    return finalize(ds, LONG_NAMES)
