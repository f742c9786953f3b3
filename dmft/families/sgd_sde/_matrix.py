"""The matrix SDE of SGD (theory/sgd_sde.md §1, §8), integrated by Euler–Maruyama for one ensemble member.

    dW = −(∇L(W) + λ_wd W) dτ + √𝒟(W) dB_τ,      𝒟(W) = η σ²(W) / B,      σ²(W) = σ_g² + σ²_data(W)

τ = η k is SGD time; the step is h = η/substeps, so ``substeps = 1`` reproduces SGD with Gaussian isotropic
gradient noise step for step. σ²(W) is the per-entry variance of one sample's gradient: the injected σ_g² plus
what the data produce (:func:`.problem.data_noise_variance`), evaluated at the current W (``noise_model =
"state"``) or frozen at W(0) (``"constant"``). Records hold singular values (descending), |W|_F² and the
losses (:func:`.problem.matrix_observables`).
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from solvers.sde import euler_maruyama

from ..._jax import require_x64
from .problem import Drift, Hyper, Problem, diffusion_coefficient, drift_of, matrix_observables

__all__ = ["diffusion_coefficient", "matrix_observables", "integrate_matrix_sde", "NOISE_MODELS"]


def _state_noise(d: Callable[[Array], Array], d0: Array) -> Callable[[Array], Array]:
    return d


def _constant_noise(d: Callable[[Array], Array], d0: Array) -> Callable[[Array], Array]:
    return lambda w: d0


#: ``solver.noise_model`` → how 𝒟 is evaluated along the path (given 𝒟(·) and 𝒟(W(0))).
NOISE_MODELS: dict[str, Callable[[Callable[[Array], Array], Array], Callable[[Array], Array]]] = {
    "state": _state_noise,
    "constant": _constant_noise,
}


def noise_model_of(name: str) -> Callable[[Callable[[Array], Array], Array], Callable[[Array], Array]]:
    try:
        return NOISE_MODELS[name]
    except KeyError:
        raise ValueError(f"solver.noise_model = {name!r}: must be one of {', '.join(NOISE_MODELS)}") from None


def integrate_matrix_sde(
    key: PRNGKeyArray,
    prob: Problem,
    hyper: Hyper,
    *,
    drift: str | Drift,
    n_records: int,
    record_every: int,
    substeps: int = 1,
    noise_model: str = "state",
    tail: int = 0,
) -> tuple[dict[str, Array], Float[Array, "m n"]]:
    """One member: records every ``record_every`` SGD steps (``n_records`` of them, the first at τ = 0), and one
    more ``tail`` steps after the last of them when ``tail`` > 0.

    Returns ``(records, W_final)``; each record leaf has a leading axis of length ``n_records`` (+ 1 with a tail).
    """
    require_x64("integrate_matrix_sde")
    d = drift_of(drift)
    d0 = diffusion_coefficient(d, prob.w0, prob, hyper)
    diffusion = noise_model_of(noise_model)(lambda w: diffusion_coefficient(d, w, prob, hyper), d0)

    def f(t: Array, w: Array, args: None) -> Array:
        return -(d.gradient(w, prob) + hyper.weight_decay * w)

    def g(t: Array, w: Array, args: None) -> Array:
        return jnp.sqrt(diffusion(w))

    def observe(t: Array, w: Array, args: None) -> dict[str, Array]:
        return matrix_observables(d, w, prob, hyper)

    return euler_maruyama(
        f, g, prob.w0, key, hyper.lr / substeps, n_records, record_every * substeps, observe=observe,
        tail=tail * substeps,
    )
