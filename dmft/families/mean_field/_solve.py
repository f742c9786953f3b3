"""Config → theory Dataset for the mean-field family: engine dispatch, μP/NTK mapping, population test loss.

* Engine: ``solver.engine = "auto"`` takes the closed form (:mod:`._linear`) for linear φ and the Monte Carlo
  solver (``_monte_carlo.solve_monte_carlo``) otherwise; ``"closed_form"`` with a nonlinear φ is an error.
* Parameterization: under NTK the theory describes the twin of width N = ``simulate.width`` with
  γ0 = γ̃0/√N (:func:`dmft.scaling.mean_field_gamma0`); as N → ∞ it tends to the lazy limit (:mod:`._lazy`).
* Test loss. With Q = ``data.test_points`` > 0: ½ mean over the test points. With Q = 0, linear φ and a synthetic
  teacher: the population loss ½E(f(x) − y)² over a fresh pair, exact because f(x) = v(t)·x/√D is linear in x;
  v is read off the outputs at the auxiliary inputs √D e_a (a = 1..D), which do not drive learning, and

      ½E(f − y)² = ½(|v|²/D − 2E[f y_clean] + E[y_clean²] + σ_ε²),
      linear teacher: E[f y] = v·β*/D, E[y²] = |β*|²/D;  tanh teacher: E[f y] = (v·β*/D)E[1 − tanh²(w)],
      E[y²] = E[tanh²(w)], w ~ N(0, |β*|²/D) (Stein's lemma; Gauss–Hermite).

  Otherwise (nonlinear φ or data from a file, Q = 0) there is no test loss and the variable is omitted.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ...config import Config, ConfigError
from ...scaling import mean_field_gamma0
from ._data import MeanFieldData, input_gram, make_dataset
from ._types import MeanFieldSolution

__all__ = ["solve_config", "population_points", "population_test_loss", "effective_gamma0", "theory_dataset",
           "twin_dataset", "solve_arrays", "outlier_steps", "MAX_POPULATION_DIM"]

MAX_POPULATION_DIM = 512  # largest D for which the population test loss is computed (D auxiliary points)
_MAX_KERNEL_GB = 8.0


class PopulationPoints(NamedTuple):
    x: jax.Array  # (D, D): √D e_a


def population_points(cfg: Config, data: MeanFieldData) -> PopulationPoints | None:
    """Auxiliary inputs for the population test loss (module docstring), or None where it does not apply."""
    d = data.x_train.shape[1]
    if (data.beta_star is None or data.x_test.shape[0] > 0 or cfg.model.activation != "linear"
            or d > MAX_POPULATION_DIM):
        return None
    return PopulationPoints(jnp.sqrt(d) * jnp.eye(d))


def population_test_loss(f: np.ndarray, data: MeanFieldData, aux: PopulationPoints) -> np.ndarray:
    """½E(f(x) − y)² over fresh pairs from the outputs f (..., T, M_all) whose last D columns are at √D e_a."""
    d = aux.x.shape[0]
    v = np.asarray(f)[..., -d:]
    beta = np.asarray(data.beta_star)
    vb = v @ beta / d
    vv = np.sum(v**2, axis=-1) / d
    rho = float(beta @ beta / d)
    if data.teacher == "linear":
        fy, yy = vb, rho
    else:
        z, w = np.polynomial.hermite_e.hermegauss(80)
        w = w / w.sum()
        th = np.tanh(np.sqrt(rho) * z)
        fy, yy = vb * float(w @ (1 - th**2)), float(w @ th**2)
    return 0.5 * (vv - 2 * fy + yy + data.noise**2)


def effective_gamma0(cfg: Config) -> float:
    """γ0 used by the theory: ``model.gamma0`` (μP) or γ̃0/√N with N = ``simulate.width`` (NTK)."""
    m = cfg.model
    return float(mean_field_gamma0(m.gamma0, cfg.simulate.width, m.parameterization))


def _engine(cfg: Config) -> str:
    e, act = cfg.solver.engine, cfg.model.activation
    if e == "closed_form" and act != "linear":
        raise ConfigError(f"solver.engine = 'closed_form': needs model.activation = 'linear' (got {act!r}); use "
                          "'auto' or 'monte_carlo'")
    if e == "auto":
        return "closed_form" if act == "linear" else "monte_carlo"
    return e


def outlier_steps(cfg: Config) -> np.ndarray:
    """Steps at which outliers are computed, theory and twin: every ``simulate.spectrum_every`` steps from 0."""
    from .twin import default_every, record_steps

    T = cfg.optim.steps
    return record_steps(T, cfg.simulate.spectrum_every or default_every(T))


def solve_arrays(cfg: Config) -> tuple[MeanFieldSolution, dict, MeanFieldData, PopulationPoints | None]:
    """The array-level solve of a config: (solution, level-2 results or {}, data, auxiliary points)."""
    data = make_dataset(cfg)
    aux = population_points(cfg, data)
    x_all = data.x_all if aux is None else jnp.concatenate([data.x_all, aux.x])
    kx = input_gram(x_all)
    m, o, s = cfg.model, cfg.optim, cfg.solver
    n_pts = kx.shape[0]
    gb = 2 * (m.depth + 2) * o.steps * n_pts**2 * 8 / 1e9  # equal-time kernels Φ^ℓ(t,t), K(t) on all points
    if gb > _MAX_KERNEL_GB:
        raise ConfigError(f"data.test_points = {data.x_test.shape[0]}: the equal-time kernels on all "
                          f"{n_pts} points need ≈ {gb:.0f} GB (limit {_MAX_KERNEL_GB:.0f}); use fewer test points")
    g0 = effective_gamma0(cfg)
    hyper = dict(depth=m.depth, gamma0=g0, sigma=m.sigma, sigma_w=m.sigma_readout, lr=o.lr)
    level2: dict = {}
    if _engine(cfg) == "closed_form":
        from ._linear import march_linear, solution_from_state

        st = march_linear(kx, data.y_train, steps=o.steps, output=s.output,
                          divergence_threshold=s.divergence_threshold, **hyper)
        sol = solution_from_state(st, kx, data.y_train, output=s.output, y_test=data.y_test, tol=s.tol,
                                  two_time=False, **hyper)
        if s.outliers and m.depth > 1:
            level2 = _linear_level2(st, cfg, g0, int(data.x_train.shape[0]))
    else:
        from ._monte_carlo import solve_monte_carlo

        sol = solve_monte_carlo(
            kx, data.y_train, activation=m.activation, key=jax.random.key(s.seed), steps=o.steps,
            samples=s.samples, iterations=s.iterations, damping=s.damping, response_damping=s.response_damping,
            response=s.response, output=s.output, tol=s.tol, y_test=data.y_test,
            divergence_threshold=s.divergence_threshold, two_time=bool(s.outliers and m.depth > 1), **hyper,
        )
        if s.outliers and m.depth > 1:
            level2 = _monte_carlo_level2(sol, kx, data, cfg, g0)
    return sol, level2, data, aux


def _linear_level2(st, cfg: Config, g0: float, n_train: int) -> dict:
    from ...spectra.outliers import gram_consistency
    from ._spectra import linear_grams, linear_outliers

    m = cfg.model
    steps = outlier_steps(cfg)
    outs, cons = [], []
    for layer in range(1, m.depth):
        kw = dict(depth=m.depth, gamma0=g0, sigma=m.sigma, lr=cfg.optim.lr, n_train=n_train)
        o = linear_outliers(st, layer, steps, k_max=cfg.solver.max_outliers, **kw)
        g, _ = linear_grams(st, layer, **kw)
        outs.append(o)
        cons.append(float(gram_consistency(g)))
    return _stack_level2(outs, cons, steps)


def _monte_carlo_level2(sol: MeanFieldSolution, kx, data: MeanFieldData, cfg: Config, g0: float) -> dict:
    from ._monte_carlo import MC_GRAM_THRESHOLD, monte_carlo_grams
    from ._spectra import hidden_layer_outliers

    m, s = cfg.model, cfg.solver
    steps = outlier_steps(cfg)
    mg = monte_carlo_grams(kx, data.y_train, sol, activation=m.activation, depth=m.depth, gamma0=g0, sigma=m.sigma,
                           sigma_w=m.sigma_readout, lr=cfg.optim.lr, key=jax.random.key(s.seed + 1),
                           samples=s.samples, steps_at=steps)
    outs = [hidden_layer_outliers(jax.tree.map(lambda a, i=i: a[i], mg.grams), mg.c, sigma=m.sigma,
                                  k_max=s.max_outliers, threshold=MC_GRAM_THRESHOLD) for i in range(m.depth - 1)]
    cons = [float(jnp.max(mg.consistency[i])) for i in range(m.depth - 1)]
    return _stack_level2(outs, cons, steps)


def _stack_level2(outs: list, cons: list[float], steps: np.ndarray) -> dict:
    return {
        "outlier_sv": np.stack([np.asarray(o.sv) for o in outs]),
        "bulk_edge": np.array([float(np.asarray(o.edge).ravel()[0]) for o in outs]),
        "n_outliers": np.stack([np.asarray(o.n_outliers) for o in outs]),
        "outliers_converged": np.array([bool(np.all(o.converged)) for o in outs]),
        "gram_consistency": np.array(cons),
        "t_sv": steps,
    }


def kernel_alignment(k: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A(t) = yᵀK(t)y / (‖K(t)‖_F |y|²) on the training points (1 when K ∝ yyᵀ)."""
    num = np.einsum("...mn,m,n->...", k, y, y)
    return num / (np.linalg.norm(k, axis=(-2, -1)) * (y @ y))


def _common_coords(cfg: Config, data: MeanFieldData) -> dict:
    P, Q = data.x_train.shape[0], data.x_test.shape[0]
    return {"t": np.arange(cfg.optim.steps), "point": np.arange(P + Q), "point2": np.arange(P + Q),
            "layer_phi": np.arange(1, cfg.model.depth + 1)}


def theory_dataset(sol: MeanFieldSolution, level2: dict, cfg: Config, data: MeanFieldData,
                   aux: PopulationPoints | None) -> xr.Dataset:
    """The Dataset of the contract (train_loss, test_loss, f, ntk, ntk_alignment, Phi_diag, outliers, diagnostics)."""
    P, Q = data.x_train.shape[0], data.x_test.shape[0]
    M = P + Q
    f_all = np.asarray(sol.f)
    ntk = np.asarray(sol.ntk)[:, :M, :M]
    y = np.asarray(data.y_train)
    ds = xr.Dataset(
        {
            "train_loss": ("t", np.asarray(sol.train_loss)),
            "f": (("t", "point"), f_all[:, :M]),
            "ntk": (("t", "point", "point2"), ntk),
            "ntk_alignment": ("t", kernel_alignment(ntk[:, :P, :P], y)),
            "Phi_diag": (("layer_phi", "t", "point", "point2"), np.asarray(sol.Phi_diag)[1:, :, :M, :M]),
            "residual": ((), float(sol.residual)),
            "converged": ((), bool(sol.converged)),
            "diverged": ((), bool(sol.diverged)),
            "divergence_step": ((), int(sol.divergence_step)),
            "mc_error": ("t", np.asarray(sol.mc_error)),
        },
        coords=_common_coords(cfg, data),
    )
    if Q > 0:
        ds["test_loss"] = ("t", np.asarray(sol.test_loss))
        ds["test_loss"].attrs["formula"] = "½ mean over the Q test points of (f − y)²"
    elif aux is not None:
        ds["test_loss"] = ("t", population_test_loss(f_all, data, aux))
        ds["test_loss"].attrs["formula"] = "½E(f(x) − y)² over fresh pairs (exact for linear φ)"
    ds["train_loss"].attrs["formula"] = "½ P⁻¹ Σ_μ Δ_μ(t)²"
    ds["ntk_alignment"].attrs["formula"] = "yᵀK(t)y / (‖K(t)‖_F |y|²), training points"
    ds["Phi_diag"].attrs["long_name"] = "Φ^ℓ(t,t) = ⟨φ(h^ℓ)φ(h^ℓ)ᵀ⟩, ℓ = layer_phi"
    ds.attrs.update(n_train=P, n_test=Q, gamma0_effective=effective_gamma0(cfg),
                    engine=_engine(cfg), output=cfg.solver.output)
    if level2:
        _add_level2(ds, level2, cfg)
    if bool(sol.diverged) and _engine(cfg) == "monte_carlo" and not bool(sol.converged):
        warnings.warn(
            f"mean_field Monte Carlo DMFT did not converge in solver.iterations = {cfg.solver.iterations} (residual "
            f"{float(sol.residual):.3g}) and its last iterate exceeds the divergence threshold at step "
            f"{int(sol.divergence_step)}: either lr = {cfg.optim.lr} is past stability or the iteration needs more "
            "iterations; outputs after that step are NaN and 'diverged' is set", RuntimeWarning, stacklevel=3)
    elif bool(sol.diverged):
        warnings.warn(
            f"mean_field DMFT diverged at step {int(sol.divergence_step)} (lr = {cfg.optim.lr} is past stability): "
            "outputs after that step are NaN and 'diverged' is set", RuntimeWarning, stacklevel=3)
    elif not bool(sol.converged):
        warnings.warn(f"mean_field DMFT did not converge (residual {float(sol.residual):.3g} > solver.tol = "
                      f"{cfg.solver.tol}): see 'residual'", RuntimeWarning, stacklevel=3)
    return ds


def _add_level2(ds: xr.Dataset, lv: dict, cfg: Config) -> None:
    """Level 2 on the step axis ``t`` (as for every family): NaN and n_outliers = −1 at the steps where it was
    not evaluated (``outlier_evaluated``); the evaluated steps are the twin's record steps ``t_spec``."""
    L, T = cfg.model.depth, cfg.optim.steps
    steps = np.asarray(lv["t_sv"], dtype=int)
    k_max = lv["outlier_sv"].shape[-1]
    ds.coords["layer"] = np.arange(1, L)
    ds.coords["k"] = np.arange(k_max)
    sv_steps = lv["outlier_sv"]
    if bool(ds["diverged"]):
        sv_steps = np.where((steps > int(ds["divergence_step"]))[None, :, None], np.nan, sv_steps)
    sv = np.full((L - 1, T, k_max), np.nan)
    sv[:, steps] = sv_steps
    n_out = np.full((L - 1, T), -1)
    n_out[:, steps] = lv["n_outliers"]
    evaluated = np.zeros(T, dtype=bool)
    evaluated[steps] = True
    ds["outlier_sv"] = (("layer", "t", "k"), sv)
    ds["outlier_sv"].attrs.update(long_name="outlier singular values of M^layer = W^layer/√N after t steps",
                                  note="NaN: no outlier, or not evaluated (outlier_evaluated); bulk edge 2σ")
    ds["outlier_evaluated"] = ("t", evaluated)
    ds["bulk_edge"] = ("layer", lv["bulk_edge"])
    ds["n_outliers"] = (("layer", "t"), n_out)
    ds["n_outliers"].attrs["note"] = "−1 at steps where level 2 was not evaluated"
    born = np.isfinite(sv)
    ds["escape_step"] = (("layer", "k"), np.where(born.any(axis=1), born.argmax(axis=1), -1))
    ds["escape_step"].attrs["note"] = "first evaluated step at which outlier k is above the bulk edge (−1: never)"
    ds["outliers_converged"] = ("layer", lv["outliers_converged"])
    ds["gram_consistency"] = ("layer", lv["gram_consistency"])


def solve_config(cfg: Config) -> xr.Dataset:
    """Theory for one config (family ``mean_field``): level 1 and, with ``solver.outliers``, level 2."""
    sol, level2, data, aux = solve_arrays(cfg)
    return theory_dataset(sol, level2, cfg, data, aux)


def twin_dataset(res: dict, cfg: Config, data: MeanFieldData, g0: float, pop: np.ndarray | None) -> xr.Dataset:
    """Dataset of the finite-width twin: the theory's names with a ``seed`` dim (divergence flagged per seed)."""
    P, Q = data.x_train.shape[0], data.x_test.shape[0]
    M = P + Q
    f = res["f"]
    y = np.asarray(data.y_train)
    train_loss = res["train_loss"]
    ntk = res["ntk"][:, :, :M, :M]
    loss0 = np.maximum(train_loss[:, :1], np.finfo(float).tiny)
    bad = ~np.isfinite(train_loss) | (train_loss > cfg.solver.divergence_threshold * loss0)
    diverged = bad.any(axis=1)
    ds = xr.Dataset(
        {
            "train_loss": (("seed", "t"), train_loss),
            "f": (("seed", "t", "point"), f[:, :, :M]),
            "ntk": (("seed", "t", "point", "point2"), ntk),
            "ntk_alignment": (("seed", "t"), kernel_alignment(ntk[:, :, :P, :P], y)),
            "Phi_diag": (("seed", "layer_phi", "t", "point", "point2"),
                         res["Phi_diag"][:, :, :, :M, :M].transpose(0, 2, 1, 3, 4)),
            "diverged": ("seed", diverged),
            "divergence_step": ("seed", np.where(diverged, bad.argmax(axis=1), -1)),
            "twin_width": ((), int(cfg.simulate.width)),  # not "width": that is the sweep axis of simulate.width
        },
        coords={**_common_coords(cfg, data), "seed": np.arange(f.shape[0])},
    )
    if Q > 0:
        ds["test_loss"] = (("seed", "t"), 0.5 * np.mean((f[:, :, P:M] - np.asarray(data.y_test)) ** 2, axis=-1))
    elif pop is not None:
        ds["test_loss"] = (("seed", "t"), pop)
    if cfg.model.depth > 1 and res["top_sv"].shape[2] > 0:
        ds.coords["layer"] = np.arange(1, cfg.model.depth)
        ds.coords["t_spec"] = res["t_sv"]
        ds.coords["k"] = np.arange(res["top_sv"].shape[-1])
        ds["top_sv"] = (("seed", "t_spec", "layer", "k"), res["top_sv"])
        ds["top_sv"].attrs["long_name"] = "largest singular values of W^layer/√N (bulk edge 2σ)"
        ds["bulk_edge"] = ("layer", np.full(cfg.model.depth - 1, 2 * cfg.model.sigma))
    ds.attrs.update(width=cfg.simulate.width, n_train=P, n_test=Q, gamma0_effective=g0)
    if diverged.any():
        warnings.warn(f"mean_field twin diverged for {int(diverged.sum())} of {diverged.size} seeds "
                      f"(lr = {cfg.optim.lr}): see 'diverged'", RuntimeWarning, stacklevel=3)
    return ds
