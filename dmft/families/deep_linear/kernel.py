r"""Sharpness from theory: the top of the stability kernel K̃(t) = γ0²N JJᵀ/P during full-batch GD
(shared/theory/edge_of_stability.md).

* **Bulk** (:mod:`._kernel_bulk`): K̃(t) has the bulk of K̃_0[κ(t)], the kernel of the initial matrices with the
  current κ_ℓ(t) = C_g^ℓ(t,t); its edge is the first minimum of the explicit λ(A) of the nested Silverstein
  equations.
* **Outliers** (:mod:`._kernel_outliers`): roots above the edge of det(I − 𝔄(λ)), 𝔄 the star-step extension of
  the level-1 DMFT; on fresh inputs (a test-set kernel X′K̂X′ᵀ/P) the data-coupling blocks vanish.
* ``sharpness(t)`` = largest outlier, else the edge; ``eos_ratio`` = η·sharpness/2 (edge of stability at 1).
  The first step with eos_ratio ≥ 1 is ``eos_step``; values at later steps are NaN (the twin's dynamics leaves
  the theory's linear-stability picture there; see the README), flagged by ``eos_crossed``.
* :func:`eos_lr`: the learning rate at which max_t η·sharpness(t; η) first reaches 2 (bracketed root in log η,
  the whole trajectory recomputed at each η); :func:`optimal_lr`: the learning rate that minimises the theory's
  test loss at the last step (Adam on log η with gradients through the level-1 solver).

Cost: one determinant of size (4L+4)b per evaluation, b the power-of-two block ≥ t; about 80 evaluations per step
(sign scan + Chandrupatla). See ``benchmarks/eos.py``. Full-batch GD only.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..._jax import require_x64
from ...config import Config
from ._kernel_bulk import bulk_edge, bulk_scalars, lazy_edge, stieltjes
from ._problem_kernel_names import KERNEL_LONG_NAMES
from ._kernel_outliers import Level1, level1_from_solution, step_spectrum

__all__ = [
    "KernelSpectrum",
    "kernel_spectrum",
    "kernel_steps",
    "kernel_variables",
    "KERNEL_LONG_NAMES",
    "eos_lr",
    "optimal_lr",
    "bulk_edge",
    "bulk_scalars",
    "stieltjes",
    "lazy_edge",
]


class KernelSpectrum(NamedTuple):
    """Top of the spectrum of K̃(t) at the evaluated ``steps`` (outliers largest first, NaN-padded)."""

    steps: np.ndarray
    edge: Float[Array, " n"]
    outliers: Float[Array, "n k"]
    n_outliers: Array
    sharpness: Float[Array, " n"]
    logdet_min: Float[Array, " n"]
    converged: Array


def _block(t: int, steps: int, smallest: int = 16) -> int:
    """Leading block that holds the spikes s < t: a power of two ≥ max(t, smallest), capped at the horizon."""
    return int(min(steps, max(smallest, 1 << max(0, t - 1).bit_length())))


def _get(sol: Any, *names: str) -> Any:
    for n in names:
        if isinstance(sol, dict) and n in sol:
            return sol[n]
        if not isinstance(sol, dict) and hasattr(sol, n):
            return getattr(sol, n)
    raise KeyError(names)


def _kappas(sol: Any, depth: int) -> Float[Array, "T L"]:
    """κ_ℓ(t) = C_g^ℓ(t,t) for ℓ = 1..L, on every step."""
    cg = _get(sol, "C_g", "Cg")
    return jnp.stack([jnp.diagonal(cg[ell]) for ell in range(1, depth + 1)], axis=1)


def kernel_spectrum(
    sol: Any, p: Any, depth: int, steps: Any = None, fresh: bool = False, k_max: int = 2, n_grid: int = 48
) -> KernelSpectrum:
    """Bulk edge, outliers and sharpness of the training-input (or, with ``fresh``, fresh-input) kernel at
    ``steps`` (default: every step) of a level-1 solution ``sol`` of :func:`.theory.solve` (full-batch GD).

    Steps are grouped by block size and each group is vmapped; float64 throughout.
    """
    require_x64("kernel_spectrum")
    T = int(_get(sol, "test_loss").shape[-1])
    steps = np.arange(T) if steps is None else np.asarray(steps, dtype=int)
    l1 = level1_from_solution(sol, p, depth)
    kappa = _kappas(sol, depth)
    sizes = np.array([_block(int(t), T) for t in steps])
    parts, order = [], []
    for b in np.unique(sizes):
        pick = np.flatnonzero(sizes == b)
        ts = jnp.asarray(steps[pick])
        parts.append(_group(l1, p, depth, int(b), ts, kappa[ts], fresh, k_max, n_grid))
        order.append(pick)
    inv = np.argsort(np.concatenate(order))
    out = jax.tree.map(lambda *xs: jnp.concatenate(xs)[inv], *parts)
    top = out.outliers[:, 0]
    sharp = jnp.where(out.n_outliers > 0, top, out.edge)
    return KernelSpectrum(steps, out.edge, out.outliers, out.n_outliers, sharp, out.logdet_min, out.converged)


def _group(l1: Level1, p: Any, depth: int, b: int, ts: Array, kappa: Array, fresh: bool, k_max: int,
           n_grid: int) -> Any:
    return _group_jit(l1, p, ts, kappa, depth=depth, b=b, fresh=fresh, k_max=k_max, n_grid=n_grid)


def _group_impl(l1: Level1, p: Any, ts: Array, kappa: Array, depth: int, b: int, fresh: bool, k_max: int,
                n_grid: int) -> Any:
    return jax.vmap(lambda t, k: step_spectrum(l1, p, depth, b, t, k, fresh, k_max, n_grid))(ts, kappa)


_group_jit = jax.jit(_group_impl, static_argnames=("depth", "b", "fresh", "k_max", "n_grid"))


# ------------------------------------------------------------------------------------------------------------
# Config level: result variables
# ------------------------------------------------------------------------------------------------------------



def kernel_steps(cfg: Config) -> np.ndarray:
    """Steps at which the kernel is evaluated: every ``solver.outlier_every`` steps (default: every step up to
    T = 64, else about 64 steps), the last step and the twin's spectrum steps."""
    from ...results import record_steps
    from .problem import spectrum_steps

    T = cfg.optim.steps
    every = cfg.solver.outlier_every or max(1, -(-T // 64))
    return record_steps(T, every, extra=spectrum_steps(cfg))


def kernel_variables(sol: Any, p: Any, cfg: Config) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
    """The theory's kernel results for one config as ``{name: (dims, values)}`` on dims ``t`` and ``k_kernel``.

    Steps after the level-1 divergence step are not evaluated (NaN). ``solver.kernel`` picks the training
    kernel, the fresh-input kernel or both; ``sharpness``/``eos_*`` always refer to the training inputs
    (the stability criterion) and are computed whenever the training kernel is.
    """
    if cfg.optim.batch_ratio is not None:
        raise ValueError("solver.sharpness: the stability-kernel theory is for full-batch GD only "
                         "(optim.batch_ratio is set); one-pass SGD is open (edge_of_stability.md §10)")
    T, L = cfg.optim.steps, cfg.model.depth
    k_max = min(cfg.solver.max_outliers, 2)
    steps = kernel_steps(cfg)
    div = int(np.asarray(_get(sol, "divergence_step")))
    if div >= 0 and bool(np.asarray(_get(sol, "diverged"))):
        steps = steps[steps < div]
    which = cfg.solver.kernel
    out: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
    evaluated = np.zeros(T, dtype=bool)
    evaluated[steps] = True
    out["kernel_evaluated"] = (("t",), evaluated)
    lr = float(cfg.optim.lr)

    def scatter(x: Any, shape: tuple[int, ...]) -> np.ndarray:
        full = np.full(shape, np.nan)
        full[steps] = np.asarray(x)
        return full

    converged = True
    eos_step = -1
    if which in ("train", "both"):
        ks = kernel_spectrum(sol, p, L, steps, fresh=False, k_max=k_max)
        sharp = scatter(ks.sharpness, (T,))
        ratio = lr * sharp / 2
        crossed = np.flatnonzero(ratio >= 1)
        eos_step = int(crossed[0]) if crossed.size else -1
        after = np.arange(T) > eos_step if eos_step >= 0 else np.zeros(T, dtype=bool)
        out["kernel_edge"] = (("t",), np.where(after, np.nan, scatter(ks.edge, (T,))))
        out["kernel_outliers"] = (("t", "k_kernel"), np.where(after[:, None], np.nan, scatter(ks.outliers,
                                                                                                (T, k_max))))
        out["sharpness"] = (("t",), np.where(after, np.nan, sharp))
        out["eos_ratio"] = (("t",), np.where(after, np.nan, ratio))
        out["kernel_logdet_min"] = (("t",), scatter(ks.logdet_min, (T,)))
        converged &= bool(np.all(np.asarray(ks.converged)))
    if which in ("fresh", "both"):
        kf = kernel_spectrum(sol, p, L, steps, fresh=True, k_max=k_max)
        after = np.arange(T) > eos_step if eos_step >= 0 else np.zeros(T, dtype=bool)
        out["sharpness_fresh"] = (("t",), np.where(after, np.nan, scatter(kf.sharpness, (T,))))
        out["kernel_outliers_fresh"] = (("t", "k_kernel"),
                                        np.where(after[:, None], np.nan, scatter(kf.outliers, (T, k_max))))
        if "kernel_edge" not in out:
            out["kernel_edge"] = (("t",), np.where(after, np.nan, scatter(kf.edge, (T,))))
        converged &= bool(np.all(np.asarray(kf.converged)))
    out["eos_step"] = ((), np.asarray(eos_step))
    out["eos_crossed"] = ((), np.asarray(eos_step >= 0))
    out["kernel_converged"] = ((), np.asarray(converged))
    return out


def add_kernel(ds: Any, sol: Any, p: Any, cfg: Config) -> Any:
    """``ds`` with the kernel variables (:func:`kernel_variables`) and their long names; notes on masking."""
    ds = ds.assign(kernel_variables(sol, p, cfg))
    ds = ds.assign_coords(k_kernel=np.arange(ds.sizes["k_kernel"]))
    for name, entry in KERNEL_LONG_NAMES.items():
        if name in ds.variables:
            ds[name].attrs["long_name"] = entry if isinstance(entry, str) else entry[0]
    if "sharpness" in ds:
        ds["sharpness"].attrs["note"] = (
            f"2/η = {2 / cfg.optim.lr:.6g}; NaN after eos_step (the theory is not compared with finite networks "
            "past the first crossing of 2/η) and at steps not evaluated (kernel_evaluated)")
    return ds


# ------------------------------------------------------------------------------------------------------------
# Learning rates from theory
# ------------------------------------------------------------------------------------------------------------


def _max_ratio(p: Any, depth: int, T: int, steps: np.ndarray, k_max: int) -> float:
    """max over the evaluated steps of η·sharpness(t)/2 (inf if the level-1 solution diverged)."""
    from .theory import solve

    sol = solve(p, T, depth)
    if bool(np.asarray(_get(sol, "diverged"))):
        return float("inf")
    ks = kernel_spectrum(sol, p, depth, steps, k_max=k_max)
    return float(np.max(np.asarray(ks.sharpness)) * float(p.lr) / 2)


def eos_lr(p: Any, depth: int, steps: int, lo: float, hi: float, every: int = 1, rtol: float = 1e-3,
           k_max: int = 1) -> tuple[float, float]:
    """Bracket (η_lo, η_hi) of the learning rate at which the theory's sharpness first reaches 2/η:
    η·max_{t<T} sharpness(t; η) crosses 2 between them (bisection in log η, the trajectory recomputed at each η;
    steps every ``every`` and the last one). ``p`` holds the other parameters (``p.lr`` is ignored);
    [lo, hi] must bracket the crossing."""
    require_x64("eos_lr")
    pts = np.unique(np.concatenate([np.arange(0, steps, every), [steps - 1]]))

    def g(lr: float) -> float:
        return _max_ratio(p._replace(lr=jnp.asarray(lr, dtype=jnp.float64)), depth, steps, pts, k_max) - 1.0

    if not (g(lo) < 0 < g(hi)):
        raise ValueError(f"eos_lr: [{lo}, {hi}] does not bracket the crossing of 2/η")
    while hi / lo > 1 + rtol:
        mid = float(np.sqrt(lo * hi))
        if g(mid) < 0:
            lo = mid
        else:
            hi = mid
    return lo, hi


def optimal_lr(p: Any, depth: int, steps: int, lr0: float, iterations: int = 60, learning_rate: float = 0.1
               ) -> tuple[float, float]:
    """(η*, test loss at the last step) minimising the theory's final test loss over η, by Adam (optax) on
    log η with exact gradients through the level-1 solver. Start from ``lr0`` (e.g. the best of a coarse grid)."""
    import optax

    from .theory import solve

    require_x64("optimal_lr")

    def loss(log_lr: Array) -> Array:
        q = p._replace(lr=jnp.exp(log_lr))
        return jnp.log(_get(solve(q, steps, depth, check=False), "test_loss")[-1])

    vg = jax.jit(jax.value_and_grad(loss))
    opt = optax.adam(learning_rate)
    x = jnp.log(jnp.asarray(lr0, dtype=jnp.float64))
    state = opt.init(x)
    best = (float("inf"), float(lr0))
    for _ in range(iterations):
        val, grad = vg(x)
        if not np.isfinite(float(val)):
            x = x - 0.1  # stepped past divergence: back off
            continue
        best = min(best, (float(val), float(jnp.exp(x))))
        upd, state = opt.update(grad, state)
        x = optax.apply_updates(x, upd)
    return best[1], float(np.exp(best[0]))
