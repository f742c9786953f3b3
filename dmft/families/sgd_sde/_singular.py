"""The singular-value SDE (Dyson-type, theory/sgd_sde.md §2), integrated by Euler–Maruyama for one member.

For W ∈ R^{m×n}, M = max(m, n), N = min(m, n), singular values s_1 ≥ … ≥ s_N and Dyson index β (β = 1 is what
the matrix SDE implies):

    ds_i = [ −c_i − λ_wd s_i + 𝒟(β(M − N + 1) − 1)/(2 s_i)
             + β (𝒟/2) Σ_{j≠i} ( 1/(s_i − s_j) + 1/(s_i + s_j) ) ] dτ + √𝒟 dβ_i

* the pair sum is level repulsion; the 1/s term is the hard-edge repulsion from 0. Dropping the pair sum
  (``pair=False``, β = 1) leaves N independent radial processes, the 1-D reduction of §3 with the stationary
  law λ = s² ~ Gamma((M − N + 1)/2, rate λ_wd/𝒟) for ``noise``; the tests use it to show that the repulsion is
  what makes the spacings Wigner-like.
* closure c_i = u_iᵀ ∇L v_i: 0 for ``noise`` (exact); for ``teacher`` the aligned-vector closure
  c_i = s_i − s*_i (the singular vectors of W taken equal to the teacher's), an approximation that holds when
  the teacher's singular values are well separated on the scale of the noise. ``phase_teacher`` has no closure
  (use the matrix SDE).
* 𝒟 = η σ²/B with σ² = σ_g² + σ²_data; for ``teacher`` σ²_data = σ_ε² + (n + 1) Σ(s_i − s*_i)²/(m n), the
  aligned-vector value of |W − W*|_F².

Numerics (§8): each step is followed by s ↦ sort(|s|) (reflection at 0, re-sorting); the diagonal i = j is
masked before dividing; inverse distances are regularised below the noise scale, 1/x → x/(x² + 0.1𝒟h), so that
near-collisions cannot produce unbounded Euler–Maruyama jumps. The step h = η/substeps should be ≪ (typical
spacing)²/𝒟: the regularisation and the collisions it softens are an O(h) bias (measured in
tests/test_sgd_sde_laws.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from solvers.sde import euler_maruyama

from ..._jax import require_x64
from .problem import Hyper

__all__ = ["sv_drift", "sv_noise_variance", "integrate_sv_sde", "SvClosure", "SV_CLOSURES", "sv_closure_of"]


class SvClosure(NamedTuple):
    """The closure of one drift at the singular-value level: c_i (``force``), σ²_data (``data_variance``) and the
    recorded loss (``losses``), each of (s, s*); ``teacher``: whether s* (the teacher's singular values) is used."""

    name: str
    force: Callable[[Array, Array | None], Array]
    data_variance: Callable[[Array, Array | None, Hyper, int, int], Array]
    losses: Callable[[Array, Array | None, Hyper, int], dict[str, Array]]
    teacher: bool


def _teacher_variance(s: Array, s_star: Array | None, hyper: Hyper, rows: int, cols: int) -> Array:
    return hyper.label_noise**2 + (cols + 1) * jnp.sum((s - s_star) ** 2) / (rows * cols)


SV_CLOSURES: dict[str, SvClosure] = {
    "noise": SvClosure(
        "noise", lambda s, s_star: jnp.zeros_like(s), lambda s, s_star, h, m, n: jnp.zeros((), s.dtype),
        lambda s, s_star, h, m: {}, False,
    ),
    "teacher": SvClosure(
        "teacher", lambda s, s_star: s - s_star, _teacher_variance,
        lambda s, s_star, h, m: {"test_loss": 0.5 * (jnp.sum((s - s_star) ** 2) + m * h.label_noise**2)}, True,
    ),
}


def sv_closure_of(drift: str) -> SvClosure:
    """The :class:`SvClosure` of ``model.drift`` (``phase_teacher`` has none: use the matrix SDE)."""
    try:
        return SV_CLOSURES[drift]
    except KeyError:
        raise ValueError(
            f"drift = {drift!r}: the singular-value SDE has a closure only for 'noise' and 'teacher'"
        ) from None


def sv_drift(
    s: Float[Array, " N"],
    closure: Float[Array, " N"],
    weight_decay: Array | float,
    diffusion: Array | float,
    big: int,
    beta: Array | float = 1.0,
    eps2: Array | float = 0.0,
    pair: bool = True,
) -> Float[Array, " N"]:
    """Drift of ds_i (formula in the module docstring); ``closure`` is c_i and ``big`` is M = max(m, n).

    ``eps2`` > 0 regularises every inverse distance, 1/x → x/(x² + ε²), below the scale of one noise step (ε²
    = 0.1 𝒟h in :func:`integrate_sv_sde`): a pair closer than that no longer receives an unbounded kick (which
    Euler–Maruyama turns into a jump far past its neighbours); the kick is at most √(𝒟h)/(4√0.1) ≈ 0.8√(𝒟h).
    """
    small = s.shape[0]
    diag = jnp.eye(small, dtype=bool)

    def inv(x: Array) -> Array:
        return x / (x**2 + eps2)

    diff = jnp.where(diag, 1.0, s[:, None] - s[None, :])
    summ = jnp.where(diag, 1.0, s[:, None] + s[None, :])
    pair_sum = jnp.sum(jnp.where(diag, 0.0, inv(diff) + inv(summ)), axis=1)
    hard = diffusion * (beta * (big - small + 1) - 1.0) * 0.5 * inv(s)
    repulsion = beta * 0.5 * diffusion * pair_sum if pair else 0.0
    return -closure - weight_decay * s + hard + repulsion


def sv_noise_variance(
    drift: str, s: Float[Array, " N"], s_star: Float[Array, " N"] | None, hyper: Hyper, rows: int, cols: int
) -> Array:
    """σ² = σ_g² + σ²_data for the singular-value state (aligned-vector value for ``teacher``)."""
    return jnp.asarray(hyper.grad_noise) ** 2 + sv_closure_of(drift).data_variance(s, s_star, hyper, rows, cols)


def integrate_sv_sde(
    key: PRNGKeyArray,
    s0: Float[Array, " N"],
    s_star: Float[Array, " N"] | None,
    hyper: Hyper,
    *,
    drift: str,
    rows: int,
    cols: int,
    n_records: int,
    record_every: int,
    substeps: int = 1,
    noise_model: str = "state",
    beta: float = 1.0,
    pair: bool = True,
    tail: int = 0,
) -> tuple[dict[str, Array], Float[Array, " N"]]:
    """One member from singular values ``s0`` (descending); ``s_star``: the teacher's (``teacher`` drift
    only).

    Records ``sv``, ``sum_sq`` = Σ s_i² and, for ``teacher``, the aligned-vector ``test_loss``
    ½(Σ(s_i − s*_i)² + m σ_ε²). ``tail``: as in :func:`solvers.sde.euler_maruyama` (in SGD steps). Returns
    ``(records, s_final)``.
    """
    from ._matrix import noise_model_of

    require_x64("integrate_sv_sde")
    cl = sv_closure_of(drift)
    big = max(rows, cols)
    target = s_star if cl.teacher else None

    def diffusion(s: Array) -> Array:
        var = jnp.asarray(hyper.grad_noise) ** 2 + cl.data_variance(s, target, hyper, rows, cols)
        return hyper.lr * var / hyper.batch_size

    step = hyper.lr / substeps
    d_of = noise_model_of(noise_model)(diffusion, diffusion(s0))

    def f(t: Array, s: Array, args: None) -> Array:
        d = d_of(s)
        return sv_drift(s, cl.force(s, target), hyper.weight_decay, d, big, beta, eps2=0.1 * d * step, pair=pair)

    def g(t: Array, s: Array, args: None) -> Array:
        return jnp.sqrt(d_of(s))

    def project(s: Array) -> Array:
        return jnp.sort(jnp.abs(s))[::-1]

    def observe(t: Array, s: Array, args: None) -> dict[str, Array]:
        return {"sv": s, "sum_sq": jnp.sum(s**2), **cl.losses(s, target, hyper, rows)}

    return euler_maruyama(
        f, g, s0, key, step, n_records, record_every * substeps, observe=observe, project=project,
        tail=tail * substeps,
    )
