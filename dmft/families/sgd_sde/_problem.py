"""Problem instances and loss models of the ``sgd_sde`` family: what the drift ∇L and the gradient noise are.

Three losses for one trained matrix W ∈ R^{m×n} (m = ``model.rows``, n = ``model.cols``):

* ``noise``: ∇L = 0. The only force is weight decay; the gradient noise is the injected σ_g.
* ``teacher``: linear teacher–student regression, one pass (a fresh batch every step):
  x ~ N(0, I_n), y = W* x + ε with ε ~ N(0, σ_ε² I_m) and W*_ij ~ N(0, ρ*/n); per-sample loss ½|y − W x|².
  Then ∇L = W − W* (population gradient), the population loss is ½(|W − W*|_F² + m σ_ε²), and the per-sample
  gradient (W − W*)xxᵀ − εxᵀ has per-entry variance, averaged over entries,

      σ²_data(W) = σ_ε² + (n + 1) |W − W*|_F² / (m n)

  (the second term is the multiplicative part of minibatch noise; derivation in :func:`data_noise_variance`).
* ``phase_teacher``: the tanh network of 2509.01349 on a fixed data set (see :mod:`._tanh_net`); ∇L is the
  full-batch gradient and σ²_data(W) the per-entry variance of per-sample gradients over the data set.

Every member/seed i of an ensemble draws its instance (initial W, teacher, data) from the key
``problem_key(seed, i)``. The SDE (theory) and the SGD twin use the *same* instance for the same i and differ
only in their noise keys, so that member i and seed i are paired.

Initialisation: W(0)_ij ~ N(0, σ²/n) (σ = ``model.sigma``, fan-in scaling as in 2509.01349).
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from . import _tanh_net

__all__ = [
    "DRIFTS",
    "N_TEST",
    "Problem",
    "Hyper",
    "problem_key",
    "noise_key",
    "normals",
    "make_problem",
    "gradient",
    "data_noise_variance",
    "losses",
]

DRIFTS = ("noise", "teacher", "phase_teacher")
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


def hyper_from_values(values: dict[str, Array]) -> Hyper:
    """The :class:`Hyper` of the swept scalars of :func:`._dataset.hyper_values`."""
    return Hyper(
        values["lr"], values["batch_size"], values["grad_noise"], values["weight_decay"], values["label_noise"]
    )


def member_problem(
    values: dict[str, Array], seed: int, index: int | Array, *, drift: str, rows: int, cols: int, samples: int
) -> Problem:
    """Instance ``index`` (SDE member or SGD seed: the same draw for both)."""
    return make_problem(
        problem_key(seed, index), drift, rows, cols, values["sigma"], values["teacher_variance"], samples
    )


def problem_key(seed: int, index: int | Array) -> PRNGKeyArray:
    """Key of instance ``index`` (shared by SDE member and SGD seed ``index``)."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), index), 0)


def noise_key(seed: int, index: int | Array, kind: str) -> PRNGKeyArray:
    """Independent noise keys for the SDE (``kind="sde"``) and the SGD twin (``kind="sgd"``) of instance
    ``index``."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), index), {"sde": 1, "sgd": 2}[kind])


def normals(key: PRNGKeyArray, *shapes: tuple[int, ...]) -> list[Array]:
    """Standard normals of the given shapes from a single draw (one random kernel to compile, not one per
    shape)."""
    sizes = [math.prod(s) for s in shapes]
    flat = jax.random.normal(key, (sum(sizes),))
    parts = jnp.split(flat, list(itertools.accumulate(sizes))[:-1])
    return [x.reshape(s) for x, s in zip(parts, shapes, strict=True)]


def make_problem(
    key: PRNGKeyArray,
    drift: str,
    rows: int,
    cols: int,
    sigma: Float[Array, ""] | float,
    teacher_variance: Float[Array, ""] | float = 1.0,
    samples: int = 4000,
    n_test: int = N_TEST,
) -> Problem:
    """Draw one instance (W(0) ~ N(0, σ²/n); teacher and data as in the module docstring)."""
    if drift == "noise":
        (g0,) = normals(key, (rows, cols))
        return Problem(sigma * g0 / jnp.sqrt(cols))
    if drift == "teacher":
        g0, gs = normals(key, (rows, cols), (rows, cols))
        return Problem(sigma * g0 / jnp.sqrt(cols), jnp.sqrt(teacher_variance) * gs / jnp.sqrt(cols))
    if drift == "phase_teacher":
        g0, task = normals(key, (rows, cols), (_tanh_net.data_size(rows, cols, samples, n_test),))
        train, test, w_t = _tanh_net.make_data(task, rows, cols, samples, n_test)
        return Problem(sigma * g0 / jnp.sqrt(cols), w_t, train, test)
    raise ValueError(f"drift = {drift!r}: must be one of {', '.join(DRIFTS)}")


def gradient(drift: str, w: Float[Array, "m n"], prob: Problem) -> Float[Array, "m n"]:
    """∇L(W): 0 (noise), W − W* (teacher), the full-batch gradient (phase_teacher)."""
    if drift == "noise":
        return jnp.zeros_like(w)
    if drift == "teacher":
        return w - prob.w_star
    return -_tanh_net.descent_direction(w, prob.train)


def data_noise_variance(
    drift: str, w: Float[Array, "m n"], prob: Problem, label_noise: Array | float
) -> Array:
    """Per-entry variance of one sample's gradient, averaged over the m n entries (σ²_data(W)).

    teacher: with E = W − W* and g = E x xᵀ − ε xᵀ, Var[(E x xᵀ)_ab] = |E_a·|² + E_ab² for Gaussian x
    (Isserlis), so Σ_ab Var g_ab = (n + 1)|E|_F² + m n σ_ε². This makes the isotropic SDE reproduce the exact
    stationary E|W − W*|_F² of one-pass SGD with h = η (see :func:`._stationary.sgd_teacher_error`).
    """
    m, n = w.shape
    if drift == "noise":
        return jnp.zeros((), w.dtype)
    if drift == "teacher":
        return label_noise**2 + (n + 1) * jnp.sum((w - prob.w_star) ** 2) / (m * n)
    return _tanh_net.sample_gradient_variance(w, prob.train)


def losses(drift: str, w: Float[Array, "m n"], prob: Problem, label_noise: Array | float) -> dict[str, Array]:
    """Loss observables: teacher: population ``test_loss``; phase_teacher: ``train_loss`` and
    ``test_loss``."""
    if drift == "noise":
        return {}
    if drift == "teacher":
        m = w.shape[0]
        return {"test_loss": 0.5 * (jnp.sum((w - prob.w_star) ** 2) + m * label_noise**2)}
    return {"train_loss": _tanh_net.loss(w, prob.train), "test_loss": _tanh_net.loss(w, prob.test)}
