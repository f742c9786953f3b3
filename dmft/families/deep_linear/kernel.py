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
  test loss at the last step (gradient descent on log η with a backtracking line search, exact gradients through
  the level-1 solver).

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
from ...results import LONG_NAMES, eos_variables
from ._kernel_bulk import bulk_edge, bulk_scalars, lazy_edge, stieltjes
from ._kernel_outliers import Level1, StepSpectrum, level1_from_solution, step_spectrum
from ._problem_kernel_names import KERNEL_LONG_NAMES

__all__ = [
    "KernelSpectrum",
    "kernel_spectrum",
    "kernel_steps",
    "kernel_variables",
    "KERNEL_LONG_NAMES",
    "eos_lr",
    "illinois_bracket",
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
    sol: Any, p: Any, depth: int, steps: Any = None, fresh: bool = False, k_max: int = 2, n_grid: int = 48,
    stop_above: float | None = None,
) -> KernelSpectrum:
    """Bulk edge, outliers and sharpness of the training-input (or, with ``fresh``, fresh-input) kernel at
    ``steps`` (default: every step) of a level-1 solution ``sol`` of :func:`.theory.solve` (full-batch GD).

    Steps are grouped by block size (groups of later steps have larger blocks) and each group is vmapped;
    float64 throughout. With ``stop_above`` (e.g. 2/η), groups after the first one whose sharpness reaches it are
    not evaluated: their entries are NaN (``n_outliers`` 0, ``converged`` True).
    """
    require_x64("kernel_spectrum")
    T = int(_get(sol, "test_loss").shape[-1])
    steps = np.arange(T) if steps is None else np.asarray(steps, dtype=int)
    l1 = level1_from_solution(sol, p, depth)
    kappa = _kappas(sol, depth)
    if steps.size == 0:
        e = jnp.zeros((0,))
        return KernelSpectrum(steps, e, jnp.zeros((0, k_max)), jnp.zeros(0, dtype=int), e, e,
                              jnp.zeros(0, dtype=bool))
    sizes = np.array([_block(int(t), T) for t in steps])
    parts, order = [], []
    stopped = False
    for b in np.unique(sizes):
        pick = np.flatnonzero(sizes == b)
        order.append(pick)
        if stopped:
            n = pick.size
            nan = jnp.full((n,), jnp.nan)
            parts.append(StepSpectrum(nan, jnp.full((n, k_max), jnp.nan), jnp.zeros(n, dtype=int), nan,
                                      jnp.ones(n, dtype=bool)))
            continue
        ts = jnp.asarray(steps[pick])
        part = _group(l1, p, depth, int(b), ts, kappa[ts], fresh, k_max, n_grid)
        parts.append(part)
        if stop_above is not None:
            sharp = np.where(np.asarray(part.n_outliers) > 0, np.asarray(part.outliers[:, 0]), np.asarray(part.edge))
            stopped = bool(np.any(sharp >= stop_above))
    inv = np.argsort(np.concatenate(order))
    out = jax.tree.map(lambda *xs: jnp.concatenate([jnp.asarray(x) for x in xs])[inv], *parts)
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
    lr = float(cfg.optim.lr)

    def scatter(x: Any, shape: tuple[int, ...], at: np.ndarray) -> np.ndarray:
        full = np.full(shape, np.nan)
        full[at] = np.asarray(x)
        return full

    converged = True
    eos_step = -1
    if which in ("train", "both"):
        # steps after the first block that reaches 2/η are not evaluated (they would be masked below)
        ks = kernel_spectrum(sol, p, L, steps, fresh=False, k_max=k_max, stop_above=2 / lr)
        at = ks.steps
        out.update(eos_variables(scatter(ks.sharpness, (T,), at), lr))
        eos_step = int(out["eos_step"][1])
        if eos_step >= 0:
            steps = steps[steps <= eos_step]
        after = np.arange(T) > eos_step if eos_step >= 0 else np.zeros(T, dtype=bool)
        out["kernel_edge"] = (("t",), np.where(after, np.nan, scatter(ks.edge, (T,), at)))
        out["kernel_outliers"] = (("t", "k_kernel"), np.where(after[:, None], np.nan,
                                                              scatter(ks.outliers, (T, k_max), at)))
        out["kernel_logdet_min"] = (("t",), np.where(after, np.nan, scatter(ks.logdet_min, (T,), at)))
        converged &= bool(np.all(np.asarray(ks.converged)))
    if which in ("fresh", "both"):
        kf = kernel_spectrum(sol, p, L, steps, fresh=True, k_max=k_max)  # up to eos_step only
        after = np.arange(T) > eos_step if eos_step >= 0 else np.zeros(T, dtype=bool)
        out["sharpness_fresh"] = (("t",), np.where(after, np.nan, scatter(kf.sharpness, (T,), steps)))
        out["kernel_outliers_fresh"] = (("t", "k_kernel"),
                                        np.where(after[:, None], np.nan, scatter(kf.outliers, (T, k_max), steps)))
        if "kernel_edge" not in out:
            out["kernel_edge"] = (("t",), np.where(after, np.nan, scatter(kf.edge, (T,), steps)))
        converged &= bool(np.all(np.asarray(kf.converged)))
    evaluated = np.zeros(T, dtype=bool)
    evaluated[steps] = True
    out["kernel_evaluated"] = (("t",), evaluated)
    out["eos_step"] = ((), np.asarray(eos_step))  # also when only the fresh-input kernel was asked for
    out["eos_crossed"] = ((), np.asarray(eos_step >= 0))
    out["kernel_converged"] = ((), np.asarray(converged))
    return out


def add_kernel(ds: Any, sol: Any, p: Any, cfg: Config) -> Any:
    """``ds`` with the kernel variables (:func:`kernel_variables`) and their long names; notes on masking."""
    ds = ds.assign(kernel_variables(sol, p, cfg))
    ds = ds.assign_coords(k_kernel=np.arange(ds.sizes["k_kernel"]))
    eos_names = {k: LONG_NAMES[k] for k in ("eos_ratio", "eos_step", "eos_crossed")}  # shared with mean_field
    for name, entry in {**eos_names, **KERNEL_LONG_NAMES}.items():
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
    lr = float(p.lr)
    ks = kernel_spectrum(sol, p, depth, steps, k_max=k_max, stop_above=2 / lr)  # stops once past the edge
    return float(np.nanmax(np.asarray(ks.sharpness)) * lr / 2)


def eos_lr(p: Any, depth: int, steps: int, lo: float, hi: float, every: int = 1, rtol: float = 1e-3,
           k_max: int = 1) -> tuple[float, float]:
    """Bracket (η_lo, η_hi), η_hi/η_lo ≤ 1 + ``rtol``, of the learning rate at which the theory's sharpness first
    reaches 2/η: g(η) = η·max_{t<T} sharpness(t; η)/2 − 1 changes sign between them (the trajectory recomputed at
    each η; steps every ``every`` and the last one). ``p`` holds the other parameters (``p.lr`` is ignored);
    [lo, hi] must bracket the crossing.

    Root bracketing in x = log η by the Illinois variant of regula falsi (the secant through the bracket ends; an
    end kept twice in a row has its g halved), each trial kept at least rtol/3 inside the bracket so that the
    bracket closes on the root from both sides; bisection where g is not finite (a diverged run). g is smooth in
    log η away from the switch of the maximising step, so this takes 3–5 solves where bisection takes
    log₂(log(hi/lo)/log(1 + rtol)) (8 for a factor-4 bracket at rtol = 0.01)."""
    require_x64("eos_lr")
    pts = np.unique(np.concatenate([np.arange(0, steps, every), [steps - 1]]))

    def g(lr: float) -> float:
        return _max_ratio(p._replace(lr=jnp.asarray(lr, dtype=jnp.float64)), depth, steps, pts, k_max) - 1.0

    g_lo, g_hi = g(lo), g(hi)
    if not (g_lo < 0 < g_hi):
        raise ValueError(f"eos_lr: [{lo}, {hi}] does not bracket the crossing of 2/η")
    x_lo, x_hi = float(np.log(lo)), float(np.log(hi))
    return tuple(float(np.exp(x)) for x in illinois_bracket(lambda x: g(float(np.exp(x))), x_lo, x_hi, g_lo, g_hi,
                                                            float(np.log1p(rtol))))


def illinois_bracket(f: Any, a: float, b: float, fa: float, fb: float, width: float,
                     max_evaluations: int = 100) -> tuple[float, float]:
    """A bracket [a′, b′] ⊂ [a, b] of a sign change of f (f(a′) < 0 ≤ f(b′)), b′ − a′ ≤ ``width``, from the bracket
    f(a) = ``fa`` < 0 < f(b) = ``fb``: Illinois regula falsi, each trial at least width/3 inside the bracket (so a
    root near one end is closed in by one step), bisection where an end value is not finite."""
    kept = 0  # +1: b was kept by the last step, -1: a was kept
    for _ in range(max_evaluations):
        if b - a <= width:
            break
        if np.isfinite(fa) and np.isfinite(fb) and fb != fa:
            x = b - fb * (b - a) / (fb - fa)
        else:
            x = 0.5 * (a + b)
        margin = min(width / 3, (b - a) / 2)
        x = min(max(x, a + margin), b - margin)
        fx = f(x)
        if fx < 0:
            a, fa = x, fx
            if kept == +1:
                fb = fb / 2
            kept = +1
        else:
            b, fb = x, fx
            if kept == -1:
                fa = fa / 2
            kept = -1
    return a, b


def optimal_lr(p: Any, depth: int, steps: int, lr0: float, iterations: int = 60, step0: float = 0.1,
               xtol: float = 1e-5) -> tuple[float, float]:
    """(η*, test loss at the last step) minimising the theory's final test loss over η: gradient descent on
    x = log η with exact gradients through the level-1 solver and a backtracking (Armijo) line search. Start from
    ``lr0`` (e.g. the best of a coarse grid); stops when a step in x is below ``xtol`` or after ``iterations``.

    Near the optimum the loss is not smooth on the scale of a fixed step: it is lowest just below the learning
    rate at which training turns unstable, where it rises steeply (lr_transfer.toml, μP, ν = 0.5: d log L/d log η
    = −1.3 at η = 0.090, +0.3 at 0.0917, +19 at 0.095). A fixed-rate method (Adam: its step is about its rate,
    whatever the gradient) overshoots into the steep side and stalls a few per cent short; the line search only
    accepts steps that lower the loss (a diverged trial counts as higher), so the iterates descend monotonically
    to the minimum next to the edge."""
    from .theory import solve

    require_x64("optimal_lr")

    def loss(log_lr: Array) -> Array:
        q = p._replace(lr=jnp.exp(log_lr))
        return jnp.log(_get(solve(q, steps, depth, check=False), "test_loss")[-1])

    vg = jax.jit(jax.value_and_grad(loss))
    f = jax.jit(loss)
    x = float(np.log(lr0))
    val, grad = (float(v) for v in vg(jnp.asarray(x, dtype=jnp.float64)))
    if not np.isfinite(val):
        raise ValueError(f"optimal_lr: the start lr0 = {lr0} diverges")
    scale = step0  # the trial step's length in x; doubles after an accepted step (up to step0), halves on rejection
    for _ in range(iterations):
        if grad == 0.0 or not np.isfinite(grad):
            break
        accepted = False
        for _ in range(60):
            trial = x - np.sign(grad) * scale
            v = float(f(jnp.asarray(trial, dtype=jnp.float64)))
            if np.isfinite(v) and v <= val - 1e-4 * abs(grad) * scale:
                accepted = True
                break
            scale /= 2
        if not accepted or scale < xtol:
            break
        x = trial
        val, grad = (float(v) for v in vg(jnp.asarray(x, dtype=jnp.float64)))
        scale = min(2 * scale, step0)
    return float(np.exp(x)), float(np.exp(val))
