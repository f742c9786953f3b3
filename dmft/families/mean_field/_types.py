"""The result of a mean-field solve, shared by the closed-form (linear φ) and Monte Carlo solvers.

Index conventions (shared/theory/mean_field.md, conventions.md §1): time t = 0..T−1 (fields at θ(t)); data
points μ = 0..M−1 with the P training points first, then the Q test points (Δ ≡ 0 there). Two-time objects are
stored as arrays of shape (T, M, T, M), X[t, μ, s, ν]; reshaped to (T·M, T·M) they are time-major, so causal
objects are block lower triangular.
"""

from __future__ import annotations

from typing import NamedTuple

from jaxtyping import Array, Bool, Float, Int

__all__ = ["MeanFieldSolution"]


class MeanFieldSolution(NamedTuple):
    """Order parameters and outputs of one mean-field DMFT solve (depth L).

    f: network outputs on all M points at θ(t), from the exact discrete average or the tangent update.
    train_loss: ½ P⁻¹ Σ_μ Δ_μ(t)² over the P training points.
    test_loss: ½ Q⁻¹ Σ (f − y)² over the Q test points (NaN when Q = 0 and no closed form applies).
    Phi: Φ^ℓ for ℓ = 0..L (Φ^0 = K^x at every t, s). Phi, G, A and B are None when the solver was asked for
        the equal-time objects only (``solve_linear(..., two_time=False)``).
    G: G^ℓ for ℓ = 1..L+1 (G^{L+1} ≡ 1).
    A: responses A^ℓ for ℓ = 0..L−1 (A^0 = 0), σ² included (mean_field.md §2).
    B: responses B^ℓ for ℓ = 1..L (B^L = 0), σ² included.
    ntk: the tangent kernel K_{μν}(t) = Σ_ℓ G^{ℓ+1}(t,t)∘Φ^ℓ(t,t).
    residual: final self-consistency residual (max abs change of the order parameters in the last sweep or
        iteration); converged: residual ≤ solver.tol (Monte Carlo: below the Monte Carlo noise floor).
    diverged / divergence_step: a loss exceeded solver.divergence_threshold × its initial value (−1 if never).
    mc_error: Monte Carlo standard error of train_loss (zeros for the closed form).
    Phi_diag: the equal-time kernels Φ^ℓ(t,t) for ℓ = 0..L (always filled; Phi[:, t, :, t, :] when Phi is).

    For linear φ the backward fields g^ℓ do not depend on the data point, so G^ℓ is constant in (μ, ν) and
    B^ℓ_{μν}(t,s) = B̂^ℓ(t,s)Δ_ν(s) does not depend on μ; A^ℓ is stored in the split over ν that the (TM)×(TM)
    formulas of mean_field.md §6 produce (only Σ_ν A^ℓ_{μν} enters the dynamics).
    """

    f: Float[Array, "T M"]
    train_loss: Float[Array, " T"]
    test_loss: Float[Array, " T"]
    Phi: Float[Array, "Lp1 T M T M"] | None
    G: Float[Array, "Lp1 T M T M"] | None
    A: Float[Array, "L T M T M"] | None
    B: Float[Array, "L T M T M"] | None
    ntk: Float[Array, "T M M"]
    residual: Float[Array, ""]
    converged: Bool[Array, ""]
    diverged: Bool[Array, ""]
    divergence_step: Int[Array, ""]
    mc_error: Float[Array, " T"]
    Phi_diag: Float[Array, "Lp1 T M M"]
