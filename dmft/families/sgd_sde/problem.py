"""Problem definition of the ``sgd_sde`` family, shared by the SDE forecast (theory) and the SGD twin: instances,
loss models (drifts), recorded steps, what is measured on a run and the Dataset both return.

Three losses for one trained matrix W ∈ R^{m×n} (m = ``model.rows``, n = ``model.cols``), each a :class:`Drift`
strategy looked up once from ``model.drift`` (:func:`drift_of`):

* ``noise``: ∇L = 0. The only force is weight decay; the gradient noise is the injected σ_g.
* ``teacher``: linear teacher–student regression, one pass (a fresh batch every step):
  x ~ N(0, I_n), y = W* x + ε with ε ~ N(0, σ_ε² I_m) and W*_ij ~ N(0, ρ*/n); per-sample loss ½|y − W x|².
  Then ∇L = W − W* (population gradient), the population loss is ½(|W − W*|_F² + m σ_ε²), and the per-sample
  gradient (W − W*)xxᵀ − εxᵀ has per-entry variance, averaged over entries,

      σ²_data(W) = σ_ε² + (n + 1) |W − W*|_F² / (m n)

  (the second term is the multiplicative part of minibatch noise; Isserlis: Var[(E x xᵀ)_ab] = |E_a·|² + E_ab²).
* ``phase_teacher``: the tanh network of 2509.01349 on a fixed data set (:mod:`._problem_tanh_net`); ∇L is the
  full-batch gradient and σ²_data(W) the per-entry variance of per-sample gradients over the data set.

Every member/seed i of an ensemble draws its instance (initial W, teacher, data) from the key
``problem_key(seed, i)``. The SDE (theory) and the SGD twin use the *same* instance for the same i and differ
only in their noise keys, so that member i and seed i are paired. ``seed`` may be traced (one compile for all
seeds).

Initialisation: W(0)_ij ~ N(0, σ²/n) (σ = ``model.sigma``, fan-in scaling as in 2509.01349).

Recorded states (:func:`schedule`): :func:`dmft.results.record_steps` with ``solver.record_every`` (default about
50 records): t = 0, k, 2k, … and always the last step T − 1.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jaxtyping import Array, Float, PRNGKeyArray

from solvers.linalg import svdvals

from ...config import Config, ConfigError
from ...results import default_every, mask_after, record_steps, status_variables
from . import _problem_phase as _phase
from . import _problem_tanh_net as _tanh_net

__all__ = [
    "DRIFTS",
    "Drift",
    "drift_of",
    "N_TEST",
    "Problem",
    "Hyper",
    "hyper_values",
    "hyper_from_values",
    "problem_key",
    "noise_key",
    "normals",
    "make_problem",
    "member_problem",
    "gradient",
    "data_noise_variance",
    "losses",
    "final_observables",
    "diffusion_coefficient",
    "matrix_observables",
    "Schedule",
    "schedule",
    "check_config",
    "records_dataset",
]

N_TEST = 1000  # fresh test inputs of the phase_teacher network (test loss and the phase criterion)


class Problem(NamedTuple):
    """One instance. Fields a loss does not use are ``None``."""

    w0: Float[Array, "m n"]
    w_star: Float[Array, "m n"] | None = None
    train: _tanh_net.TanhData | None = None
    test: _tanh_net.TanhData | None = None


class Hyper(NamedTuple):
    """Scalar hyper-parameters; each may be traced (vmapped over in sweeps)."""

    lr: Float[Array, ""] | float  # η
    batch_size: Float[Array, ""] | float  # B
    grad_noise: Float[Array, ""] | float  # σ_g (injected, per sample)
    weight_decay: Float[Array, ""] | float  # λ_wd
    label_noise: Float[Array, ""] | float = 0.0  # σ_ε (teacher)


def hyper_values(cfg: Config) -> dict[str, float]:
    """The vmappable scalars of a config, by :class:`Hyper` field (plus ``sigma``, ``teacher_variance``)."""
    return {
        "lr": cfg.optim.lr,
        "batch_size": float(cfg.optim.batch_size),
        "grad_noise": cfg.optim.grad_noise,
        "weight_decay": cfg.optim.weight_decay,
        "label_noise": cfg.data.noise,
        "sigma": cfg.model.sigma,
        "teacher_variance": cfg.data.teacher_variance,
    }


def hyper_from_values(values: dict[str, Array]) -> Hyper:
    """The :class:`Hyper` of the swept scalars of :func:`hyper_values`."""
    return Hyper(
        values["lr"], values["batch_size"], values["grad_noise"], values["weight_decay"], values["label_noise"]
    )


def problem_key(seed: int | Array, index: int | Array) -> PRNGKeyArray:
    """Key of instance ``index`` (shared by SDE member and SGD seed ``index``); ``seed`` may be traced."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), index), 0)


_NOISE_STREAMS = {"sde": 1, "sgd": 2}


def noise_key(seed: int | Array, index: int | Array, kind: str) -> PRNGKeyArray:
    """Independent noise keys for the SDE (``kind="sde"``) and the SGD twin (``kind="sgd"``) of instance
    ``index``."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), index), _NOISE_STREAMS[kind])


def normals(key: PRNGKeyArray, *shapes: tuple[int, ...]) -> list[Array]:
    """Standard normals of the given shapes from a single draw (one random kernel to compile, not one per
    shape)."""
    sizes = [math.prod(s) for s in shapes]
    flat = jax.random.normal(key, (sum(sizes),))
    parts = jnp.split(flat, list(itertools.accumulate(sizes))[:-1])
    return [x.reshape(s) for x, s in zip(parts, shapes, strict=True)]


# ------------------------------------------------------------------------------------------------------------
# Drifts (loss models) as strategies
# ------------------------------------------------------------------------------------------------------------


class Drift(NamedTuple):
    """One loss model: how an instance is drawn and what its gradient, noise and losses are.

    ``make(key, rows, cols, sigma, teacher_variance, samples, n_test)`` → :class:`Problem`;
    ``gradient(w, prob)`` = ∇L(W); ``noise_variance(w, prob, label_noise)`` = σ²_data(W);
    ``losses(w, prob, label_noise)`` → dict of loss observables; ``batch_draws(m, n, batch)``: shapes of the
    extra standard normals one SGD step needs; ``batch_gradient(w, prob, draws, k, label_noise, batch)``: the mean
    per-sample gradient over the minibatch of SGD step k; ``has_teacher``, ``has_phase``: what is recorded at the
    end of a run (teacher singular values; the phase criterion).
    """

    name: str
    make: Callable[..., Problem]
    gradient: Callable[[Array, Problem], Array]
    noise_variance: Callable[[Array, Problem, Any], Array]
    losses: Callable[[Array, Problem, Any], dict[str, Array]]
    batch_draws: Callable[[int, int, int], list[tuple[int, int]]]
    batch_gradient: Callable[[Array, Problem, list[Array], Array, Any, int], Array]
    has_teacher: bool
    has_phase: bool


def _init(g0: Array, sigma: Any, cols: int) -> Array:
    return sigma * g0 / jnp.sqrt(cols)


# noise ------------------------------------------------------------------------------------------------------


def _make_noise(key, rows, cols, sigma, teacher_variance=1.0, samples=0, n_test=N_TEST) -> Problem:  # noqa: ANN001
    (g0,) = normals(key, (rows, cols))
    return Problem(_init(g0, sigma, cols))


def _noise_batch_gradient(w, prob, draws, k, label_noise, batch) -> Array:  # noqa: ANN001
    return jnp.zeros_like(w)


_NOISE = Drift(
    "noise", _make_noise, lambda w, prob: jnp.zeros_like(w), lambda w, prob, ln: jnp.zeros((), w.dtype),
    lambda w, prob, ln: {}, lambda m, n, b: [], _noise_batch_gradient, False, False,
)

# teacher ----------------------------------------------------------------------------------------------------


def _make_teacher(key, rows, cols, sigma, teacher_variance=1.0, samples=0, n_test=N_TEST) -> Problem:  # noqa: ANN001
    g0, gs = normals(key, (rows, cols), (rows, cols))
    return Problem(_init(g0, sigma, cols), jnp.sqrt(teacher_variance) * gs / jnp.sqrt(cols))


def _teacher_noise_variance(w: Array, prob: Problem, label_noise: Any) -> Array:
    m, n = w.shape
    return label_noise**2 + (n + 1) * jnp.sum((w - prob.w_star) ** 2) / (m * n)


def _teacher_losses(w: Array, prob: Problem, label_noise: Any) -> dict[str, Array]:
    return {"test_loss": 0.5 * (jnp.sum((w - prob.w_star) ** 2) + w.shape[0] * label_noise**2)}


def _teacher_batch_gradient(w, prob, draws, k, label_noise, batch) -> Array:  # noqa: ANN001
    x, eps = draws
    y = x @ prob.w_star.T + label_noise * eps
    return (x @ w.T - y).T @ x / batch


_TEACHER = Drift(
    "teacher", _make_teacher, lambda w, prob: w - prob.w_star, _teacher_noise_variance, _teacher_losses,
    lambda m, n, b: [(b, n), (b, m)], _teacher_batch_gradient, True, False,
)

# phase_teacher ----------------------------------------------------------------------------------------------


def _make_phase(key, rows, cols, sigma, teacher_variance=1.0, samples=4000, n_test=N_TEST) -> Problem:  # noqa: ANN001
    g0, task = normals(key, (rows, cols), (_tanh_net.data_size(rows, cols, samples, n_test),))
    train, test, w_t = _tanh_net.make_data(task, rows, cols, samples, n_test)
    return Problem(_init(g0, sigma, cols), w_t, train, test)


def _phase_batch_gradient(w, prob, draws, k, label_noise, batch) -> Array:  # noqa: ANN001
    """The fixed training set visited in ⌊P/B⌋ batches in a fixed order (2509.01349)."""
    n_batches = prob.train.h0.shape[0] // batch
    start = (k % n_batches) * batch
    sub = _tanh_net.TanhData(
        jax.lax.dynamic_slice_in_dim(prob.train.h0, start, batch),
        jax.lax.dynamic_slice_in_dim(prob.train.y, start, batch),
        prob.train.z,
    )
    return -_tanh_net.descent_direction(w, sub)


_PHASE_TEACHER = Drift(
    "phase_teacher", _make_phase, lambda w, prob: -_tanh_net.descent_direction(w, prob.train),
    lambda w, prob, ln: _tanh_net.sample_gradient_variance(w, prob.train),
    lambda w, prob, ln: {"train_loss": _tanh_net.loss(w, prob.train), "test_loss": _tanh_net.loss(w, prob.test)},
    lambda m, n, b: [], _phase_batch_gradient, True, True,
)

DRIFTS: dict[str, Drift] = {d.name: d for d in (_NOISE, _TEACHER, _PHASE_TEACHER)}


def drift_of(drift: str | Drift) -> Drift:
    """The :class:`Drift` of ``model.drift`` (a Drift passes through)."""
    if isinstance(drift, Drift):
        return drift
    try:
        return DRIFTS[drift]
    except KeyError:
        raise ValueError(f"drift = {drift!r}: must be one of {', '.join(DRIFTS)}") from None


def make_problem(
    key: PRNGKeyArray,
    drift: str | Drift,
    rows: int,
    cols: int,
    sigma: Float[Array, ""] | float,
    teacher_variance: Float[Array, ""] | float = 1.0,
    samples: int = 4000,
    n_test: int = N_TEST,
) -> Problem:
    """Draw one instance (W(0) ~ N(0, σ²/n); teacher and data as in the module docstring)."""
    return drift_of(drift).make(key, rows, cols, sigma, teacher_variance, samples, n_test)


def member_problem(
    values: dict[str, Array], seed: int | Array, index: int | Array, *, drift: str | Drift, rows: int, cols: int,
    samples: int,
) -> Problem:
    """Instance ``index`` (SDE member or SGD seed: the same draw for both)."""
    return make_problem(
        problem_key(seed, index), drift, rows, cols, values["sigma"], values["teacher_variance"], samples
    )


def gradient(drift: str | Drift, w: Float[Array, "m n"], prob: Problem) -> Float[Array, "m n"]:
    """∇L(W): 0 (noise), W − W* (teacher), the full-batch gradient (phase_teacher)."""
    return drift_of(drift).gradient(w, prob)


def data_noise_variance(drift: str | Drift, w: Float[Array, "m n"], prob: Problem, label_noise: Array | float) -> Array:
    """Per-entry variance of one sample's gradient, averaged over the m n entries (σ²_data(W)). For ``teacher``
    this makes the isotropic SDE reproduce the exact stationary E|W − W*|_F² of one-pass SGD with h = η."""
    return drift_of(drift).noise_variance(w, prob, label_noise)


def losses(drift: str | Drift, w: Float[Array, "m n"], prob: Problem, label_noise: Array | float) -> dict[str, Array]:
    """Loss observables: teacher: population ``test_loss``; phase_teacher: ``train_loss`` and ``test_loss``."""
    return drift_of(drift).losses(w, prob, label_noise)


def final_observables(
    drift: str | Drift, prob: Problem, w_final: Float[Array, "h f"], hyper: Hyper, sigma_w: Array | float
) -> dict[str, Array]:
    """What SDE members and SGD runs report about their final weights: the teacher's singular values (teacher
    drifts) and, for ``phase_teacher``, the phase criterion and observables at θ = η/B."""
    d = drift_of(drift)
    extra: dict[str, Array] = {}
    if d.has_teacher:
        extra["teacher_sv"] = svdvals(prob.w_star)
    if d.has_phase:
        theta = hyper.lr / hyper.batch_size
        extra.update(
            {
                **_phase.phase_criterion(w_final, prob.test, theta, sigma_w),
                **_phase.phase_observables(prob.w0, w_final, prob.test),
            }
        )
        extra.pop("mean_spacing")
    return extra


def diffusion_coefficient(drift: str | Drift, w: Float[Array, "m n"], prob: Problem, hyper: Hyper) -> Array:
    """𝒟(W) = η (σ_g² + σ²_data(W)) / B: variance per entry per unit τ of the gradient noise of SGD."""
    var = hyper.grad_noise**2 + drift_of(drift).noise_variance(w, prob, hyper.label_noise)
    return hyper.lr * var / hyper.batch_size


def matrix_observables(drift: str | Drift, w: Float[Array, "m n"], prob: Problem, hyper: Hyper) -> dict[str, Array]:
    """What is recorded: ``sv`` (descending), ``sum_sq`` = |W|_F² = Σλ_i, and the losses of the drift model."""
    return {"sv": svdvals(w), "sum_sq": jnp.sum(w**2), **drift_of(drift).losses(w, prob, hyper.label_noise)}


# ------------------------------------------------------------------------------------------------------------
# Recorded steps, config rules
# ------------------------------------------------------------------------------------------------------------


class Schedule(NamedTuple):
    """Recorded states: ``uniform`` records every ``every`` steps from 0, then one more after ``tail`` steps
    (``tail`` = 0: the last uniform record is already T − 1). ``steps``: the recorded steps."""

    every: int
    uniform: int
    tail: int
    steps: np.ndarray


def schedule(cfg: Config) -> Schedule:
    """The recorded states of a config (:func:`dmft.results.record_steps`, ``solver.record_every`` or about 50
    records), split into a uniform part and a tail for the integrators."""
    T = cfg.optim.steps
    every = max(1, min(cfg.solver.record_every or default_every(T, 50), T - 1))
    steps = record_steps(T, every)
    uniform = (T - 1) // every + 1
    return Schedule(every, uniform, (T - 1) - (uniform - 1) * every, steps)


def check_config(cfg: Config) -> None:
    """Cross-key rules of the family (one-line :class:`ConfigError`)."""
    phase = drift_of(cfg.model.drift).has_phase
    if cfg.solver.level == "singular_values" and phase:
        raise ConfigError(
            "solver.level = 'singular_values': no closure for model.drift = 'phase_teacher'; use 'matrix'"
        )
    if phase and cfg.optim.batch_size > cfg.data.samples:
        raise ConfigError(
            f"optim.batch_size = {cfg.optim.batch_size}: must be <= data.samples = {cfg.data.samples}"
        )
    if phase and min(cfg.model.rows, cfg.model.cols) < 3:
        raise ConfigError(f"model.rows = {cfg.model.rows}: phase_teacher needs rows and cols >= 3")
    if cfg.optim.steps < 2:
        raise ConfigError(f"optim.steps = {cfg.optim.steps}: sgd_sde needs at least 2 recorded states")


# ------------------------------------------------------------------------------------------------------------
# Status and Dataset
# ------------------------------------------------------------------------------------------------------------


def _bad_records(
    records: dict[str, np.ndarray], diffusion0: np.ndarray, cfg: Config, tau_end: float
) -> np.ndarray:
    """(run, record) flags: a non-finite record, or |W|² or a loss above ``divergence_threshold`` × its
    reference. Reference of |W|²: its initial value plus the pure-diffusion growth m n 𝒟(0) τ_end and the
    teacher's scale, so a noise-driven random walk is not mistaken for divergence; of a loss: its initial value."""
    thr = cfg.solver.divergence_threshold
    runs, n_rec = records["sum_sq"].shape
    bad = np.zeros((runs, n_rec), bool)
    for v in records.values():
        bad |= ~np.all(np.isfinite(v.reshape(runs, n_rec, -1)), axis=2)
    m, n = cfg.model.rows, cfg.model.cols
    ref = records["sum_sq"][:, :1] + m * n * diffusion0[:, None] * tau_end + m * cfg.data.teacher_variance + 1e-300
    with np.errstate(invalid="ignore", over="ignore"):
        bad |= records["sum_sq"] > thr * ref
        for name in ("train_loss", "test_loss"):
            if name in records:
                bad |= records[name] > thr * (records[name][:, :1] + 1e-300)
    return bad


def records_dataset(
    cfg: Config,
    records: dict[str, np.ndarray],
    diffusion0: np.ndarray,
    ens_dim: str,
    extra: dict[str, np.ndarray] | None = None,
) -> xr.Dataset:
    """The Dataset of one config from per-run ``records`` (leading axes: run, record), theory and twin alike.

    Dims: ``t`` (recorded step, with coordinate ``tau`` = η t), ``i`` (singular value, descending) and the
    ensemble dim (``member`` for the SDE, ``seed`` for SGD). Variables: ``sv``, ``sum_sq``, ``train_loss`` /
    ``test_loss`` where the loss model has them, ``diffusion0`` (𝒟 at W(0)), the status (``diverged``,
    ``divergence_step`` per run, the recorded step where a record first went bad, -1 if none; records after it
    are NaN), ``teacher_sv`` for the teacher drifts; for ``phase_teacher`` the criterion, observables and phase of
    every run plus ``p_ordered`` and ``phase_fraction``. ``extra``: per-run scalars (final observables).
    """
    records = {k: np.asarray(v, dtype=float) for k, v in records.items()}
    t = schedule(cfg).steps
    tau = cfg.optim.lr * t
    diffusion0 = np.asarray(diffusion0, float)
    runs = records["sv"].shape[0]
    bad = _bad_records(records, diffusion0, cfg, float(tau[-1]))
    diverged = bad.any(axis=1)
    k = np.where(diverged, t[np.argmax(bad, axis=1)], -1)
    kk = k.reshape(-1, 1)
    data: dict[str, Any] = {
        "sv": ((ens_dim, "t", "i"), mask_after(records["sv"], kk, t, t_axis=1)),
        "sum_sq": ((ens_dim, "t"), mask_after(records["sum_sq"], k, t)),
        "diffusion0": ((ens_dim,), diffusion0),
        **status_variables(diverged, k, True, dims=(ens_dim,)),
    }
    for name in ("train_loss", "test_loss"):
        if name in records:
            data[name] = ((ens_dim, "t"), mask_after(records[name], k, t))
    extra = {name: np.asarray(v) for name, v in (extra or {}).items()}
    for name, v in extra.items():
        data[name] = ((ens_dim, "i")[: v.ndim], v.astype(bool) if name == "ordered" else v.astype(float))
    if drift_of(cfg.model.drift).has_phase:
        with np.errstate(invalid="ignore", divide="ignore"):
            growth = _phase.spacing_growth(records["sv"], tau)
        data["spacing_growth"] = ((ens_dim,), growth)
        phase = _phase.classify(extra["ordered"], diverged, extra["preact_var"])
        data["phase"] = ((ens_dim,), phase)
        data["p_ordered"] = ((), float(np.mean(phase == 0)))
        data["phase_fraction"] = (("phase_name",), np.bincount(phase, minlength=3) / runs)
        data["theta"] = ((), cfg.optim.lr / cfg.optim.batch_size)
    n_sv = records["sv"].shape[-1]
    coords: dict[str, Any] = {"t": t, "tau": ("t", tau), ens_dim: np.arange(runs), "i": np.arange(n_sv)}
    if "phase_fraction" in data:
        coords["phase_name"] = list(_phase.PHASES)
    ds = xr.Dataset(data, coords=coords)
    ds.attrs.update(
        {"family": "sgd_sde", "drift": cfg.model.drift, "level": cfg.solver.level, "ensemble_dim": ens_dim}
    )
    if diverged.any():
        warnings.warn(
            f"sgd_sde: {int(diverged.sum())} of {runs} runs diverged (first at step {int(k[diverged].min())}; see "
            "the 'diverged' variable; records after it are NaN); lower optim.lr or raise optim.batch_size",
            RuntimeWarning,
            stacklevel=3,
        )
    return ds
