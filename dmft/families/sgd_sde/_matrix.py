"""The matrix SDE of SGD (theory/sgd_sde.md §1, §8), integrated by Euler–Maruyama for one ensemble member.

    dW = −(∇L(W) + λ_wd W) dτ + √𝒟(W) dB_τ,      𝒟(W) = η σ²(W) / B,      σ²(W) = σ_g² + σ²_data(W)

τ = η k is SGD time; the step is h = η/substeps, so ``substeps = 1`` reproduces SGD with Gaussian isotropic
gradient noise step for step. σ²(W) is the per-entry variance of one sample's gradient: the injected σ_g² plus
what the data produce (:func:`._problem.data_noise_variance`), evaluated at the current W (``noise_model =
"state"``) or frozen at W(0) (``"constant"``). Records hold singular values (descending), |W|_F² and the
losses.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from solvers.linalg import svdvals
from solvers.sde import euler_maruyama

from ..._jax import require_x64
from ._problem import Hyper, Problem, data_noise_variance, gradient, losses

__all__ = ["diffusion_coefficient", "matrix_observables", "integrate_matrix_sde"]


def diffusion_coefficient(drift: str, w: Float[Array, "m n"], prob: Problem, hyper: Hyper) -> Array:
    """𝒟(W) = η (σ_g² + σ²_data(W)) / B: variance per entry per unit τ."""
    var = hyper.grad_noise**2 + data_noise_variance(drift, w, prob, hyper.label_noise)
    return hyper.lr * var / hyper.batch_size


def matrix_observables(drift: str, w: Float[Array, "m n"], prob: Problem, hyper: Hyper) -> dict[str, Array]:
    """What is recorded: ``sv`` (descending), ``sum_sq`` = |W|_F² = Σλ_i, and the losses of the drift
    model."""
    return {
        "sv": svdvals(w),
        "sum_sq": jnp.sum(w**2),
        **losses(drift, w, prob, hyper.label_noise),
    }


def integrate_matrix_sde(
    key: PRNGKeyArray,
    prob: Problem,
    hyper: Hyper,
    *,
    drift: str,
    n_records: int,
    record_every: int,
    substeps: int = 1,
    noise_model: str = "state",
) -> tuple[dict[str, Array], Float[Array, "m n"]]:
    """One member: records every ``record_every`` SGD steps (``n_records`` of them, the first at τ = 0).

    Returns ``(records, W_final)``; each record leaf has a leading axis of length ``n_records``.
    """
    require_x64("integrate_matrix_sde")
    d0 = diffusion_coefficient(drift, prob.w0, prob, hyper)

    def f(t: Array, w: Array, args: None) -> Array:
        return -(gradient(drift, w, prob) + hyper.weight_decay * w)

    def g(t: Array, w: Array, args: None) -> Array:
        d = diffusion_coefficient(drift, w, prob, hyper) if noise_model == "state" else d0
        return jnp.sqrt(d)

    def observe(t: Array, w: Array, args: None) -> dict[str, Array]:
        return matrix_observables(drift, w, prob, hyper)

    return euler_maruyama(
        f, g, prob.w0, key, hyper.lr / substeps, n_records, record_every * substeps, observe=observe
    )
