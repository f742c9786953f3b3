"""The claims gallery: every claim of the six papers the library implements, each with a figure made from a shipped
config (``configs/figures/``), theory against twin, and the agreement measured when the figure is made.

``dmft gallery [--quick] [--out DIR] [--only ID ...]`` runs every job (one config: a ``compare`` or a ``sweep``),
draws the family's standard figures through the registry (:func:`dmft.plot.figures_for`), keeps the figure that
shows each claim as ``DIR/<claim>.png`` and writes the measured numbers next to it (``DIR/<claim>.json``, with the
caption text). ``--quick`` shrinks every job (steps, widths, seeds, samples) so that the whole gallery runs in a
few minutes on a laptop CPU; the numbers then measure the quick runs, not the shipped sizes.

The documentation's gallery page (``docs/gallery.md``) is generated from :data:`CLAIMS` and these files.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["PAPERS", "JOBS", "CLAIMS", "Job", "Claim", "run_gallery", "command_of", "default_out"]

#: arXiv id → short reference (authors, topic).
PAPERS: dict[str, str] = {
    "2605.07870": "Lauditi, Pehlevan, Bordelon — spectral dynamics in deep networks: two-level DMFT, outlier escape, "
                  "learning-rate transfer",
    "2502.02531": "Bordelon, Pehlevan — deep linear network training dynamics from random initialization "
                  "(proportional limit)",
    "2205.09653": "Bordelon, Pehlevan — self-consistent dynamical field theory of kernel evolution in wide networks",
    "2510.01930": "Nishiyama, Imaizumi — precise dynamics of diagonal linear networks (DMFT)",
    "2507.12709": "Olsen et al. — from SGD to spectra: Dyson Brownian motion of singular values",
    "2509.01349": "Park, Lucini, Aarts — phase diagram and eigenvalue dynamics of SGD",
}


@dataclass(frozen=True)
class Job:
    """One computation behind one or more claims: a shipped config under ``configs/figures/`` run by ``command``.

    Attributes:
        name: the config's name (``figures/<name>``).
        command: ``"compare"`` (theory and twin of one config) or ``"sweep"``.
        kind: for a sweep, ``"solve"`` (theory), ``"simulate"`` or ``"both"`` (twin variables prefixed ``sim_``).
        quick: ``--set`` overrides that make the job run in seconds (``dmft gallery --quick``).
    """

    name: str
    command: str
    kind: str = "solve"
    quick: Mapping[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> str:
        return f"figures/{self.name}"


@dataclass(frozen=True)
class Claim:
    """A claim of a paper and how the gallery shows it.

    Attributes:
        id: file stem of its figure and caption (``<id>.png``, ``<id>.json``).
        paper: arXiv id (a key of :data:`PAPERS`).
        text: the claim, in one or two sentences.
        job: the :class:`Job` that computes it (``None``: not reproduced yet).
        figure: the name of the family figure that shows it.
        measure: ``(result) -> (numbers, caption)``; ``result`` is ``(theory, twin)`` for a compare and the grid
            for a sweep. The caption states the measured agreement with the numbers.
        status: ``"reproduced"``, ``"in progress"`` or ``"not reproduced"``.
        why: for claims not reproduced, why not.
        shows: what the figure draws (theory lines, twin points, references).
    """

    id: str
    paper: str
    text: str
    job: str | None = None
    figure: str | None = None
    measure: Callable[[Any], tuple[dict[str, float], str]] | None = None
    status: str = "reproduced"
    why: str = ""
    shows: str = ""


def command_of(job: Job, quick: bool = False) -> str:
    """The ``dmft`` command that computes a job (what a reader types to remake the figure's data)."""
    cmd = f"dmft {job.command} {job.config}"
    if job.command == "sweep" and job.kind != "solve":
        cmd += f" --kind {job.kind}"
    if quick:
        cmd += "".join(f" --set {k}={_toml(v)}" for k, v in job.quick.items())
    return cmd


def _toml(v: Any) -> str:
    if isinstance(v, list | tuple):
        return "[" + ",".join(_toml(x) for x in v) + "]"
    if isinstance(v, bool):
        return str(v).lower()
    return str(v)


#: Every job of the gallery, by name (one shipped config each).
JOBS: dict[str, Job] = {j.name: j for j in (
    Job("dl_mup", "compare", quick={"optim.steps": 21, "simulate.dim": 48, "simulate.seeds": 2,
                                    "simulate.spectrum_every": 10}),
    Job("dl_sgd", "compare", quick={"optim.steps": 21, "simulate.dim": 48, "simulate.seeds": 2}),
    Job("dl_width", "sweep", quick={"optim.steps": 21, "sweep.width_ratio": [0.5, 2, 16]}),
    Job("dl_outliers_width", "sweep", "both", quick={"optim.steps": 16, "simulate.dim": 32, "simulate.seeds": 2,
                                                     "simulate.spectrum_every": 5, "sweep.width_ratio": [0.5, 4]}),
    Job("dl_lr_transfer", "sweep", "both", quick={"optim.steps": 16, "simulate.dim": 32, "simulate.seeds": 2,
                                                  "sweep.width_ratio": [1, 4], "sweep.lr": [0.02, 0.08, 0.32]}),
    Job("dl_sharpness_width", "sweep", "both", quick={"optim.steps": 5, "simulate.dim": 24, "simulate.seeds": 2,
                                                      "sweep.width_ratio": [0.5, 2]}),
    Job("eo_outputs", "sweep", "both", quick={"optim.steps": 11, "simulate.dim": 40, "simulate.seeds": 2,
                                              "extensive_output.grid": 64, "extensive_output.quad_rows": 200,
                                              "sweep.extensive_output.outputs": [1, 40]}),
    Job("eo_width", "sweep", "both", quick={"optim.steps": 11, "simulate.dim": 40, "simulate.seeds": 2,
                                            "extensive_output.grid": 64, "extensive_output.quad_rows": 200,
                                            "sweep.width_ratio": [2, 8]}),
    Job("mf_linear", "compare", quick={"optim.steps": 10, "simulate.width": 256, "simulate.seeds": 2}),
    Job("mf_relu", "compare", quick={"optim.steps": 6, "solver.samples": 1000, "simulate.width": 512,
                                     "simulate.seeds": 2}),
    Job("mf_width", "sweep", "both", quick={"optim.steps": 10, "simulate.seeds": 2,
                                            "sweep.simulate.width": [128, 512]}),
    Job("diag_compare", "compare", quick={"optim.steps": 40, "solver.samples": 500, "solver.replicas": 2,
                                          "simulate.dim": 300, "simulate.seeds": 2, "simulate.snapshots": [0, 20, 39]}),
    Job("diag_init_scale", "sweep", quick={"optim.steps": 80, "solver.samples": 500, "solver.replicas": 2,
                                           "simulate.snapshots": [0, 79], "sweep.init_scale": [0.03, 0.3, 3.0]}),
    Job("diag_plateaus", "sweep", quick={"optim.steps": 120, "solver.samples": 500, "solver.replicas": 2,
                                         "simulate.snapshots": [0, 119], "sweep.init_scale": [0.001, 0.1]}),
    Job("sgd_noise", "compare", quick={"optim.steps": 301, "solver.ensemble": 8, "simulate.seeds": 8}),
    Job("sgd_teacher", "compare", quick={"optim.steps": 301, "solver.ensemble": 8, "simulate.seeds": 8}),
    Job("sgd_spread", "sweep", quick={"optim.steps": 401, "solver.ensemble": 8, "sweep.lr": [0.02, 0.08],
                                      "sweep.batch_size": [4]}),
    Job("sgd_phase", "compare", quick={"optim.steps": 301, "solver.ensemble": 4, "simulate.seeds": 4,
                                       "data.samples": 64}),
    Job("sgd_phase_map", "sweep", "both", quick={"optim.steps": 201, "solver.ensemble": 2, "simulate.seeds": 2,
                                                 "data.samples": 64, "sweep.sigma": [0.5, 8], "sweep.lr": [0.125, 2]}),
)}


def _compute(job: Job, quick: bool) -> Any:
    """``(theory, twin)`` of a compare job, the grid of a sweep job (twin variables prefixed ``sim_``)."""
    from . import api
    from .config import load_config
    from .plot import merge_compare
    from .shipped import find_config

    overrides = [f"{k}={_toml(v)}" for k, v in job.quick.items()] if quick else []
    cfg = load_config(find_config(job.config), overrides=overrides)
    if job.command == "compare":
        return api.compare(cfg)
    kinds = ("solve", "simulate") if job.kind == "both" else (job.kind,)
    grids = [api.sweep(cfg, kind=k, progress=False) for k in kinds]
    if len(grids) == 1:
        return grids[0]
    grid = merge_compare(grids[0], grids[1])
    grid.attrs["sweep_axes"] = grids[0].attrs["sweep_axes"]
    return grid


# ----------------------------------------------------------------------------------------------------------------
# Measures: each returns (numbers, caption); numbers are written to DIR/<claim>.json, the caption states them
# ----------------------------------------------------------------------------------------------------------------


def _f(x: Any) -> float:
    return float(np.asarray(x, dtype=float))


def _pct(x: float) -> str:
    return f"{100 * x:+.0f} %" if abs(x) >= 0.1 else f"{100 * x:+.2g} %"


def _mean_se(runs: Any, dim: str = "seed") -> tuple[float, float]:
    v = np.asarray(runs.values if hasattr(runs, "values") else runs, dtype=float).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("nan")


def _loss_gaps(res: Any) -> tuple[dict[str, float], str]:
    """Theory against the twin's seed mean, for every loss both hold (relative gaps, :func:`dmft.cli.loss_gaps`)."""
    from .cli import loss_gaps

    theory, sim = res
    gaps = loss_gaps(theory, sim)
    nums: dict[str, float] = {}
    parts = []
    for name, g in gaps.items():
        nums.update({f"{name}_gap_rms": g["rms"], f"{name}_gap_final": g["final"], f"{name}_twin_se": g["se"]})
        parts.append(f"{name.replace('_', ' ')}: theory − twin {100 * g['rms']:.2g} % RMS over t, "
                     f"{_pct(g['final'])} at t = {g['t_final']} (twin s.e. {100 * g['se']:.2g} %)")
    return nums, "; ".join(parts) + f" ({sim.sizes['seed']} twin seeds)."


def _outlier_rows(theory: Any, top: Any, layers: Any, name: str) -> tuple[dict[str, float], list[str]]:
    """Leading theory outlier against the twin's top singular value at the last recorded step, per layer.
    ``top``: the twin's top singular values with dims (seed, t_spec, layer) after selecting k/i = 0."""
    nums: dict[str, float] = {}
    rows = []
    ts = int(top["t_spec"].values[-1])
    for layer in layers:
        th = _f(theory["outlier_sv"].sel(layer=layer, t=ts).isel(k=0))
        m, se = _mean_se(top.sel(layer=layer, t_spec=ts))
        edge = _f(theory["bulk_edge"].sel(layer=layer))
        nums.update({f"{name}{layer}_theory": th, f"{name}{layer}_twin": m, f"{name}{layer}_twin_se": se,
                     f"{name}{layer}_edge": edge})
        if np.isfinite(th):
            rows.append(f"{name}{layer}: theory {th:.4g}, twin {m:.4g} ± {se:.2g} (gap {_pct(th / m - 1)}, "
                        f"{abs(th - m) / se:.1f} s.e.; bulk edge {edge:.3g})")
        else:
            rows.append(f"{name}{layer}: no theory outlier; twin top {m:.4g} ± {se:.2g} (bulk edge {edge:.3g})")
    return nums, rows


def _dl_outliers(res: Any) -> tuple[dict[str, float], str]:
    theory, sim = res
    top = sim["spectrum"].isel(i=0)
    nums, rows = _outlier_rows(theory, top, theory["layer"].values, "W")
    ts = int(top["t_spec"].values[-1])
    return nums, f"At t = {ts}: " + "; ".join(rows) + f" (twin D = {sim.attrs.get('dim')}, {sim.sizes['seed']} seeds)."


def _dl_bulk(res: Any) -> tuple[dict[str, float], str]:
    """The twin's largest singular value below the theory outliers against the bulk edge of the initial law."""
    theory, sim = res
    ts = int(sim["t_spec"].values[-1])
    nums: dict[str, float] = {}
    rows = []
    for layer in theory["layer"].values:
        out = theory["outlier_sv"].sel(layer=layer, t=ts).values
        n_out = int(np.isfinite(out).sum())
        m, se = _mean_se(sim["spectrum"].sel(layer=layer, t_spec=ts).isel(i=n_out))
        edge = _f(theory["bulk_edge"].sel(layer=layer))
        nums.update({f"W{layer}_n_outliers": n_out, f"W{layer}_bulk_top_twin": m, f"W{layer}_edge": edge})
        rows.append(f"W{layer}: {n_out} outlier(s); next singular value {m:.4g} ± {se:.2g} against the edge "
                    f"{edge:.4g} ({_pct(m / edge - 1)})")
    return nums, (f"At t = {ts}, the twin's largest singular value below the theory outliers sits at the edge of "
                  f"the initial law: " + "; ".join(rows) + f" (finite-D edge fluctuations ∝ D^(−2/3), "
                  f"D = {sim.attrs.get('dim')}).")


def _final(grid: Any, name: str, **sel: Any) -> Any:
    da = grid[name].sel(sel) if sel else grid[name]
    return da.isel(t=-1)


def _dl_width(grid: Any) -> tuple[dict[str, float], str]:
    from .families.deep_linear.theory import lazy_test_loss
    from .io import config_of

    cfg = config_of(grid)
    m = cfg.model
    nus = grid["width_ratio"].values
    nums: dict[str, float] = {}
    parts = []
    for param in grid["parameterization"].values:
        fin = _final(grid, "test_loss", parameterization=param).values
        nums.update({f"{param}_final_test_nu{nu:g}": float(v) for nu, v in zip(nus, fin, strict=True)})
        parts.append(f"{'μP' if param == 'mup' else 'NTK'} final test loss " +
                     ", ".join(f"{v:.4g}" for v in fin) + f" at ν = {', '.join(f'{n:g}' for n in nus)}")
    lazy = lazy_test_loss(cfg.optim.steps, cfg.optim.lr, m.depth, m.sigma, m.sigma_readout, m.gamma0,
                          cfg.data.alpha, cfg.data.noise, cfg.data.teacher_variance)
    ntk = _final(grid, "test_loss", parameterization="ntk").values
    gap = np.abs(ntk - float(np.asarray(lazy)[-1]))
    nums.update({f"ntk_gap_to_lazy_nu{nu:g}": float(g) for nu, g in zip(nus, gap, strict=True)})
    mup = _final(grid, "test_loss", parameterization="mup").values
    nums["mup_change_last_two"] = float(abs(mup[-1] / mup[-2] - 1))
    lazy_final = float(np.asarray(lazy)[-1])
    change = 100 * nums["mup_change_last_two"]
    return nums, ("; ".join(parts) + f". NTK against the lazy (kernel) oracle {lazy_final:.4g}: gap "
                  + ", ".join(f"{g:.2g}" for g in gap)
                  + f" (expected ∝ 1/ν). μP changes by {change:.2g} % between the two widest ν (theory).")


def _dl_outliers_width(grid: Any) -> tuple[dict[str, float], str]:
    nu = grid["width_ratio"].values[-1]
    nums: dict[str, float] = {}
    parts = []
    for param in grid["parameterization"].values:
        sel = {"width_ratio": nu, "parameterization": param}
        flags = grid["outlier_evaluated"]
        flags = flags.sel({k: v for k, v in sel.items() if k in flags.dims})
        flags = flags.isel({d: 0 for d in flags.dims if d != "t"})
        t_last = int(grid["t"].values[np.flatnonzero(flags.values)[-1]])
        for layer in grid["layer"].values:
            out = _f(grid["outlier_sv"].sel(sel).sel(layer=layer, t=t_last).isel(k=0))
            edge = _f(grid["bulk_edge"].sel({k: v for k, v in sel.items() if k in grid["bulk_edge"].dims})
                      .sel(layer=layer)) if "layer" in grid["bulk_edge"].dims else float("nan")
            excess = out / edge - 1 if np.isfinite(out) else 0.0
            nums[f"{param}_W{layer}_excess"] = excess
            text = f"{'μP' if param == 'mup' else 'NTK'} W{layer}: outlier {_pct(excess)} above the edge"
            if "sim_spectrum" in grid:
                ts = int(grid["t_spec"].values[-1])
                m, se = _mean_se(grid["sim_spectrum"].sel(sel).sel(layer=layer, t_spec=ts).isel(i=0))
                th = _f(grid["outlier_sv"].sel(sel).sel(layer=layer).sel(t=ts, method="nearest").isel(k=0))
                if np.isfinite(th):
                    nums[f"{param}_W{layer}_twin_gap"] = th / m - 1
                    text += f" (twin top singular value {m:.4g} ± {se:.2g}, theory {th:.4g})"
            parts.append(text)
    return nums, f"At the widest ν = {nu:g}, last evaluated step: " + "; ".join(parts) + "."


def _dl_lr_transfer(grid: Any) -> tuple[dict[str, float], str]:
    lrs = grid["lr"].values
    nus = grid["width_ratio"].values
    nums: dict[str, float] = {}
    parts = []
    for param in grid["parameterization"].values:
        for prefix, who in (("", "theory"), ("sim_", "twin")):
            if prefix + "test_loss" not in grid:
                continue
            best = []
            for nu in nus:
                fin = _final(grid, prefix + "test_loss", parameterization=param, width_ratio=nu)
                if "seed" in fin.dims:
                    fin = fin.mean("seed")
                v = np.where(np.isfinite(fin.values), fin.values, np.inf)
                best.append(float(lrs[int(np.argmin(v))]))
                nums[f"{param}_{who}_best_lr_nu{nu:g}"] = best[-1]
            parts.append(f"{'μP' if param == 'mup' else 'NTK'} {who}: best η " + ", ".join(f"{b:g}" for b in best))
    return nums, f"Best learning rate (grid {', '.join(f'{x:g}' for x in lrs)}) at ν = " + \
        ", ".join(f"{n:g}" for n in nus) + ": " + "; ".join(parts) + "."


def _dl_sharpness_width(grid: Any) -> tuple[dict[str, float], str]:
    """Edge of stability across widths: the theory's sharpness at the last step (or where it crosses 2/η) per
    parameterization and ν, its spread over ν, and the twin's Lanczos λ_max against it at every step from t = 2
    up to the crossing (t = 0, 1: the bulk edge alone, whose finite-D gap closes only as D^(−2/3))."""
    from .io import config_of

    lr = config_of(grid).optim.lr
    nus = grid["width_ratio"].values
    T = int(grid["t"].values[-1])
    twin = "sim_kernel_top" in grid
    nums: dict[str, float] = {}
    parts = []
    worst_rel, worst_z, edge_rel = 0.0, 0.0, []
    for param in grid["parameterization"].values:
        name = "μP" if param == "mup" else "NTK"
        stay, crossed = [], []
        for nu in nus:
            sel = {"parameterization": param, "width_ratio": nu}
            th = grid["sharpness"].sel(sel).values
            step = int(grid["eos_step"].sel(sel))
            last = step if step >= 0 else T
            nums[f"{param}_nu{nu:g}_eos_step"] = step
            nums[f"{param}_nu{nu:g}_sharpness"] = float(th[last])
            (crossed if step >= 0 else stay).append((nu, step, float(th[last])))
            if not twin:
                continue
            tw = grid["sim_kernel_top"].sel(sel)
            m0, _ = _mean_se(tw.sel(t=0))
            edge_rel.append(m0 / th[0] - 1)
            for t in range(2, last + 1):
                m, se = _mean_se(tw.sel(t=t))
                worst_rel = max(worst_rel, abs(m / th[t] - 1))
                worst_z = max(worst_z, abs(m - th[t]) / se)
            m, se = _mean_se(tw.sel(t=last))
            nums[f"{param}_nu{nu:g}_twin"], nums[f"{param}_nu{nu:g}_twin_se"] = m, se
        text = f"{name}:"
        if len(stay) == 1:
            nu1, _, v1 = stay[0]
            text += f" at t = {T} sharpness {v1:.4g} at ν = {nu1:g} (η·sharpness/2 = {lr * v1 / 2:.2f})"
        elif stay:
            vals = np.array([v for _, _, v in stay])
            spread = float(vals.max() / vals.min() - 1)
            nums[f"{param}_spread"] = spread
            text += (f" at t = {T} sharpness " + ", ".join(f"{v:.4g}" for v in vals) + " at ν = "
                     f"{', '.join(f'{n:g}' for n, _, _ in stay)} (" +
                     (f"spread {100 * spread:.2g} %" if spread < 1 else f"a factor {1 + spread:.3g} apart") +
                     ", η·sharpness/2 = "
                     f"{lr * vals.min() / 2:.2f}–{lr * vals.max() / 2:.2f})")
        if crossed:
            text += ("; crosses 2/η at " if stay else " crosses 2/η at ") + ", ".join(
                f"t = {s} for ν = {n:g} ({v:.4g})" for n, s, v in crossed)
        parts.append(text)
    caption = f"2/η = {2 / lr:g}. " + "; ".join(parts) + "."
    if twin:
        nums.update({"twin_max_rel_gap": worst_rel, "twin_max_z": worst_z,
                     "twin_edge_gap_min": float(min(edge_rel)), "twin_edge_gap_max": float(max(edge_rel))})
        caption += (f" Twin (D = {config_of(grid).simulate.dim}, {grid.sizes['seed']} seeds, Lanczos) against the "
                    f"theory from t = 2 up to the crossing: "
                    f"max |gap| {100 * worst_rel:.2g} % ({worst_z:.1f} s.e.); at t = 0 (bulk edge only) the twin sits "
                    f"{_pct(min(edge_rel))} to {_pct(max(edge_rel))} off (finite-D edge, ∝ D^(−2/3)).")
    return nums, caption


def _eo_outputs(grid: Any) -> tuple[dict[str, float], str]:
    """Extensive outputs, one width: per number of outputs C, the twin's singular values of W⁰/√N that end above
    the initial bulk edge σ(1 + ν^(−1/2)) (per network) and the move of its median; the largest C (C = κD) against
    the exact ν = ∞ μP theory (median, q90, edge), C = 1 against the ν = ∞ outlier √k_t(√ρ*)."""
    import jax

    from .families.extensive_output._infinite import modes
    from .io import config_of

    cfg = config_of(grid)
    m = cfg.model
    edge0 = m.sigma * (1 + m.width_ratio**-0.5)
    ts = int(grid["t_spec"].values[-1])
    cs = [int(c) for c in grid["outputs"].values]
    nums: dict[str, float] = {"initial_edge": edge0}
    parts = []
    for c in cs:
        point = grid.sel(outputs=c)
        sv0, sv1 = point["sim_spectrum"].isel(t_spec=0), point["sim_spectrum"].sel(t_spec=ts)
        n = int(np.isfinite(sv1.isel(seed=0)).sum())
        above = float((sv1 > 1.02 * edge0).sum("i").mean())
        ratio = float(sv1.median("i").mean() / sv0.median("i").mean())
        nums.update({f"C{c}_above_edge": above, f"C{c}_median_ratio": ratio})
        text = f"C = {c}: {above:.3g} of {n} singular values above the initial edge, median ×{ratio:.3f}"
        if c < n:  # few outputs: the next value sits at the initial edge (bulk unchanged)
            nxt, _ = _mean_se(sv1.isel(i=c))
            nums[f"C{c}_next_over_edge"] = nxt / edge0 - 1
            text += f", next singular value {nxt:.4g} ({_pct(nxt / edge0 - 1)} from the edge)"
        if c == 1:
            with jax.enable_x64(True):
                k = modes(np.array([np.sqrt(cfg.data.teacher_variance)]), cfg.optim.lr, m.gamma0, m.sigma,
                          m.sigma_readout, cfg.optim.steps).k
            th = float(np.sqrt(np.asarray(k)[ts, 0]))
            top, se = _mean_se(sv1.isel(i=0))
            nums.update({"C1_outlier_twin": top, "C1_outlier_nu_inf": th})
            text += f"; outlier {top:.4g} ± {se:.2g} (ν = ∞ theory {th:.4g}, {_pct(top / th - 1)})"
        parts.append(text)
    c = cs[-1]
    point = grid.sel(outputs=c)
    rows = []
    for name, q in (("median", 0.5), ("q90", 0.9)):
        tw, se = _mean_se(point["sim_quantiles"].sel(t_spec=ts, q=q))
        th = _f(point["quantiles"].sel(t_spec=ts, q=q))
        nums.update({f"C{c}_{name}_twin": tw, f"C{c}_{name}_nu_inf": th})
        rows.append(f"{name} {tw:.4g} ± {se:.2g} vs {th:.4g} ({_pct(tw / th - 1)})")
    tw, se = _mean_se(point["sim_edge"].sel(t_spec=ts))
    th = _f(point["edge"].sel(t_spec=ts))
    nums.update({f"C{c}_edge_twin": tw, f"C{c}_edge_nu_inf": th})
    rows.append(f"top {tw:.4g} ± {se:.2g} vs edge {th:.4g} ({_pct(tw / th - 1)})")
    return nums, (f"Full GD, μP, ν = {m.width_ratio:g}, twin D = {cfg.simulate.dim} ({grid.sizes['seed']} seeds), "
                  f"W⁰/√N at t = {ts}; initial bulk edge {edge0:.4g}. " + "; ".join(parts) +
                  f". C = {c} against the exact ν = ∞ μP theory (the gaps are the twin's finite ν and D; the top "
                  f"singular value also carries the D^(−2/3) edge bias): " + ", ".join(rows) + ".")


def _eo_width(grid: Any) -> tuple[dict[str, float], str]:
    """Extensive outputs against width: the twin's top singular value and median of W⁰/√N at the last recorded
    step for each ν, μP against the exact ν = ∞ theory, NTK against the lazy limit σ."""
    from .io import config_of

    cfg = config_of(grid)
    nus = grid["width_ratio"].values
    ts = int(grid["t_spec"].values[-1])
    nums: dict[str, float] = {}
    parts = []
    for param in grid["parameterization"].values:
        name = "μP" if param == "mup" else "NTK"
        point = grid.sel(parameterization=param, t_spec=ts)
        edge = point["sim_edge"].mean("seed").values
        med = point["sim_quantiles"].sel(q=0.5).mean("seed").values
        th_edge = float(np.nanmedian(point["edge"].values))
        th_med = float(np.nanmedian(point["quantiles"].sel(q=0.5).values))
        for nu, e, q in zip(nus, edge, med, strict=True):
            nums.update({f"{param}_edge_nu{nu:g}": float(e), f"{param}_median_nu{nu:g}": float(q)})
        nums.update({f"{param}_edge_theory": th_edge, f"{param}_median_theory": th_med,
                     f"{param}_edge_change_last_two": float(abs(edge[-1] / edge[-2] - 1)),
                     f"{param}_edge_gap_widest": float(edge[-1] / th_edge - 1),
                     f"{param}_median_gap_widest": float(med[-1] / th_med - 1)})
        ref = "ν = ∞ theory" if param == "mup" else "lazy limit σ"
        parts.append(f"{name}: top singular value " + ", ".join(f"{e:.4g}" for e in edge) +
                     f" ({ref} {th_edge:.4g}), median " + ", ".join(f"{q:.4g}" for q in med) +
                     f" ({ref} {th_med:.4g})")
    change = 100 * nums["mup_edge_change_last_two"]
    return nums, (f"Twin (D = {cfg.simulate.dim}, {grid.sizes['seed']} seeds) at t = {ts}, W⁰/√N, ν = " +
                  ", ".join(f"{n:g}" for n in nus) + ": " + "; ".join(parts) +
                  f". Under μP the edge changes by {change:.2g} % between the two widest ν and sits "
                  f"{_pct(nums['mup_edge_gap_widest'])} from the ν = ∞ edge (finite-D edge bias ∝ D^(−2/3)); under "
                  f"NTK it falls towards σ.")


def _mf_outliers(res: Any) -> tuple[dict[str, float], str]:
    theory, sim = res
    top = sim["top_sv"].isel(k=0)
    nums, rows = _outlier_rows(theory, top, theory["layer"].values, "M")
    ts = int(top["t_spec"].values[-1])
    return nums, f"Hidden matrices M^ℓ = W^ℓ/√N at t = {ts}: " + "; ".join(rows) + \
        f" (twin N = {int(sim['twin_width']) if 'twin_width' in sim else '?'}, {sim.sizes['seed']} seeds)."


def _mf_kernels(res: Any) -> tuple[dict[str, float], str]:
    theory, sim = res
    th = _f(theory["ntk_alignment"].isel(t=-1))
    m, se = _mean_se(sim["ntk_alignment"].isel(t=-1))
    th0 = _f(theory["ntk_alignment"].isel(t=0))
    nums = {"alignment_theory": th, "alignment_twin": m, "alignment_twin_se": se, "alignment_t0": th0}
    return nums, (f"Kernel alignment grows from {th0:.3g} to {th:.4g} (theory) against {m:.4g} ± {se:.2g} (twin) "
                  f"at the last step (gap {_pct(th / m - 1)}).")


def _mf_relu(res: Any) -> tuple[dict[str, float], str]:
    theory, sim = res
    nums, text = _loss_gaps(res)
    rms = float(np.sqrt(((sim["f"].mean("seed") - theory["f"]) ** 2).mean()))
    nums["f_rms_gap"] = rms
    mc = float(np.nanmax(theory["mc_error"].values)) if "mc_error" in theory else float("nan")
    nums["mc_error_max"] = mc
    return nums, f"RMS gap of the outputs f(t, μ) {rms:.3g} (Monte Carlo error ≤ {mc:.2g}); " + text


def _mf_width(grid: Any) -> tuple[dict[str, float], str]:
    gap = np.abs(grid["sim_train_loss"].mean("seed") - grid["train_loss"]).max("t")
    widths = gap["width"].values
    nums: dict[str, float] = {}
    parts = []
    for param in gap["parameterization"].values if "parameterization" in gap.dims else [None]:
        g = gap.sel(parameterization=param) if param is not None else gap
        g = g.isel({d: 0 for d in g.dims if d != "width"}).values
        slope = float(np.polyfit(np.log(widths), np.log(g), 1)[0]) if len(widths) > 1 else float("nan")
        nums.update({f"{param}_gap_N{int(n)}": float(v) for n, v in zip(widths, g, strict=True)})
        nums[f"{param}_slope"] = slope
        parts.append(f"{'μP' if param == 'mup' else 'NTK'}: max_t |loss gap| " +
                     ", ".join(f"{v:.2g}" for v in g) + f" (fitted ∝ N^{slope:.2f})")
    return nums, f"Twin against the N = ∞ theory at N = {', '.join(str(int(n)) for n in widths)}: " + \
        "; ".join(parts) + "."


def _diag_losses(res: Any) -> tuple[dict[str, float], str]:
    theory, sim = res
    nums, text = _loss_gaps(res)
    th, mcse = _f(theory["test_loss"].isel(t=-1)), _f(theory["test_loss_mcse"].isel(t=-1))
    m, se = _mean_se(sim["test_loss"].isel(t=-1))
    z = (th - m) / np.hypot(mcse, se)
    nums.update({"final_test_theory": th, "final_test_mcse": mcse, "final_test_twin": m, "final_test_z": z})
    return nums, (f"Final test loss: DMFT {th:.4g} ± {mcse:.2g} (Monte Carlo), twin {m:.4g} ± {se:.2g} "
                  f"(z = {z:+.1f}); " + text)


def _diag_fixed_point(grid: Any) -> tuple[dict[str, float], str]:
    from .families import diagonal_linear as dl
    from .io import config_of

    cfg = config_of(grid)
    p = dl.params_from_config(cfg)
    nums: dict[str, float] = {}
    parts = []
    for a in grid["init_scale"].values:
        fp = _f(dl.fixed_point(p._replace(init_scale=float(a)), cfg.model.form, cfg.data.prior).test_loss)
        fin = _f(grid["test_loss"].sel(init_scale=a).isel(t=-1))
        nums[f"a{a:g}_final"], nums[f"a{a:g}_fixed_point"] = fin, fp
        parts.append(f"a = {a:g}: {fin:.4g} vs {fp:.4g} ({_pct(fin / fp - 1)})")
    return nums, ("Final DMFT test loss against the fixed point of gradient flow (minimum-Φ_a interpolator) at "
                  f"τ = {cfg.optim.lr * (cfg.optim.steps - 1):.3g}: " + "; ".join(parts) + ".")


def _diag_plateaus(grid: Any) -> tuple[dict[str, float], str]:
    from .io import config_of

    cfg = config_of(grid)
    t = grid["t"].values.astype(float)
    nums: dict[str, float] = {}
    parts = []
    for a in grid["init_scale"].values:
        y = grid["test_loss"].sel(init_scale=a).values
        below = np.flatnonzero(y < 0.5 * y[0])
        x = cfg.optim.lr * t / np.log(1 / a)
        esc = float(x[below[0]]) if below.size else float("nan")
        nums[f"a{a:g}_escape"] = esc
        parts.append(f"a = {a:g}: {esc:.3g}")
    vals = np.array([v for v in nums.values() if np.isfinite(v)])
    ratio = float(grid["init_scale"].values.max() / grid["init_scale"].values.min())
    spread = float(vals.max() / vals.min() - 1) if vals.size > 1 else float("nan")
    nums["escape_spread"] = spread
    return nums, ("Rescaled time τ/log(1/a) at which the test loss first halves: " + ", ".join(parts) +
                  f" (spread {100 * spread:.2g} % over a factor {ratio:g} in a).")


def _sgd_stationary(res: Any) -> tuple[dict[str, float], str]:
    from .families.sgd_sde import _stationary

    sde, sgd = res
    rows, cols = int(sde.attrs["model.rows"]), int(sde.attrs["model.cols"])
    law = _f(sde["stationary_sum_sq"])
    var = law / (rows * cols)
    nums: dict[str, float] = {"sum_sq_law": law}
    parts = []
    for who, ds in (("SDE", sde), ("SGD", sgd)):
        dim = "member" if "member" in ds.dims else "seed"
        m, se = _mean_se(ds["sum_sq"].isel(t=-1), dim)
        lam = np.sort(np.asarray(ds["sv"].isel(t=-1).values, dtype=float).ravel() ** 2)
        lam = lam[np.isfinite(lam)]
        cdf = _stationary.mp_eigen_cdf(lam, rows, cols, var)
        emp = np.arange(1, lam.size + 1) / lam.size
        ks = float(np.max(np.maximum(np.abs(emp - cdf), np.abs(emp - 1 / lam.size - cdf))))
        nums.update({f"{who}_sum_sq": m, f"{who}_sum_sq_se": se, f"{who}_ks": ks})
        parts.append(f"{who} {m:.4g} ± {se:.2g} (KS distance of the pooled λ to the law {ks:.3f}, n = {lam.size})")
    return nums, f"Stationary E|W|² = E Σλ: Laguerre law {law:.4g}; " + "; ".join(parts) + "."


def _sgd_teacher(res: Any) -> tuple[dict[str, float], str]:
    sde, sgd = res
    exact = _f(sde["expected_test_loss"].isel(t=-1))
    nums: dict[str, float] = {"exact_final": exact}
    parts = []
    for who, ds in (("SDE", sde), ("SGD", sgd)):
        dim = "member" if "member" in ds.dims else "seed"
        m, se = _mean_se(ds["test_loss"].isel(t=-1), dim)
        nums.update({f"{who}_final": m, f"{who}_z": (m - exact) / se})
        parts.append(f"{who} {m:.4g} ± {se:.2g} (z = {(m - exact) / se:+.1f})")
    return nums, f"Final test loss against the exact expectation of one-pass SGD {exact:.4g}: " + "; ".join(parts) + "."


def _sgd_spread(grid: Any) -> tuple[dict[str, float], str]:
    dim = "member" if "member" in grid.dims else "seed"
    axes = [d for d in grid["sv"].dims if d not in (dim, "t", "i")]
    flat = grid.stack(point=axes)
    sv = flat["sv"].isel(t=-1)
    spread = np.sqrt(((sv - flat["teacher_sv"]) ** 2).mean((dim, "i"))).values
    from .io import config_of

    cfg = config_of(grid)
    lr = flat["lr"].values if "lr" in flat.coords else np.full(spread.shape, cfg.optim.lr)
    b = flat["batch_size"].values if "batch_size" in flat.coords else np.full(spread.shape, cfg.optim.batch_size)
    theta = lr / b
    slope = float(np.polyfit(np.log(theta), np.log(spread), 1)[0])
    return {"slope": slope}, (f"Spread of the final singular values around the teacher's against Θ = η/B over "
                              f"{theta.size} points (Θ = {theta.min():.3g} … {theta.max():.3g}): "
                              f"fitted ∝ Θ^{slope:.3f} (law: Θ^0.5).")


def _sgd_phase(res: Any) -> tuple[dict[str, float], str]:
    sde, sgd = res
    nums: dict[str, float] = {}
    meds = {}
    for who, ds in (("SDE", sde), ("SGD", sgd)):
        dim = "member" if "member" in ds.dims else "seed"
        meds[who] = float(ds["train_loss"].isel(t=-1).median(dim))
        nums[f"{who}_train_median"] = meds[who]
        if "phase_fraction" in ds:
            for name, v in zip(ds["phase_fraction"]["phase_name"].values, ds["phase_fraction"].values, strict=True):
                nums[f"{who}_{name}"] = float(v)
    gap = meds["SDE"] / meds["SGD"] - 1
    nums["train_gap"] = gap
    frac = ", ".join(f"{k.split('_', 1)[1]} {v:.2f}/{nums.get('SGD_' + k.split('_', 1)[1], float('nan')):.2f}"
                     for k, v in nums.items() if k.startswith("SDE_") and k != "SDE_train_median")
    return nums, (f"Final median train loss: SDE {meds['SDE']:.4g}, SGD {meds['SGD']:.4g} ({_pct(gap)}); "
                  f"phase fractions SDE/SGD: {frac}.")


def _sgd_phase_map(grid: Any) -> tuple[dict[str, float], str]:
    frac = grid["phase_fraction"]
    sim = grid["sim_phase_fraction"]
    other = [d for d in frac.dims if d != "phase_name"]
    a = frac.argmax("phase_name").values.ravel()
    b = sim.transpose(*frac.dims).argmax("phase_name").values.ravel()
    agree = float(np.mean(a == b))
    return {"majority_agreement": agree, "points": float(a.size)}, (
        f"The SDE's majority phase equals SGD's at {int(np.sum(a == b))} of {a.size} grid points "
        f"({100 * agree:.0f} %; grid over {', '.join(other)}).")


#: Every claim of the six papers, in the order of :data:`PAPERS`.
CLAIMS: tuple[Claim, ...] = (
    # 2605.07870 -------------------------------------------------------------------------------------------------
    Claim("spectra_bulk_outliers", "2605.07870",
          "While the spike added by training has finite rank, the bulk of every weight matrix stays the law of its "
          "initialisation (Marchenko–Pastur for W⁰, quarter circle for hidden layers); learning adds outliers.",
          "dl_mup", "spectra", _dl_bulk,
          shows="twin histograms (first and last recorded step), bulk law and theory outliers (lines)"),
    Claim("outlier_trajectories", "2605.07870",
          "Two-level DMFT predicts the outlier singular values of every layer over training; naive BBP with spike "
          "norms does not (the spike directions depend on the bulk).",
          "dl_mup", "outliers", _dl_outliers,
          shows="theory outliers (lines), bulk edge (dashed), twin top singular values (points, mean ± std)"),
    Claim("outliers_mup_vs_ntk", "2605.07870",
          "Under μP the outlier trajectories settle as the width grows; under NTK they fall back to the bulk edge "
          "(the lazy limit).",
          "dl_outliers_width", "outliers_vs_width", _dl_outliers_width,
          shows="theory lines per ν, twin points (mean ± std) on top; one row per parameterization"),
    Claim("lr_transfer", "2605.07870",
          "Learning-rate transfer: under μP the best learning rate is stable across widths; under NTK it drifts.",
          "dl_lr_transfer", "lr_transfer", _dl_lr_transfer,
          shows="final test loss against η: theory lines, twin points (mean ± std); × marks diverged runs"),
    Claim("mean_field_outliers", "2605.07870",
          "Outliers of the hidden matrices of a μP network on a finite data set leave the bulk edge 2σ as features "
          "are learned (level 2 on the mean-field DMFT).",
          "mf_linear", "outliers", _mf_outliers,
          shows="theory outliers (lines), bulk edge, twin top singular values (mean ± std)"),
    Claim("extensive_outputs", "2605.07870",
          "With few outputs (C = 1, 3) the trained first layer is its initial bulk plus C outliers; with a number of "
          "outputs proportional to the width (C = D) every step has extensive rank and the bulk itself restructures "
          "(most singular values leave the initial bulk), as the exact infinite-width μP theory of a toy model "
          "predicts. Full GD at finite width has no exact theory here (only the twin and its D → ∞ extrapolation).",
          "eo_outputs", "phenomenon", _eo_outputs,
          shows="twin histograms of W⁰/√N at t = 0 and the last step per C, initial bulk edge (dashed), values "
                "above it (markers), ν = ∞ theory density at the last step"),
    Claim("extensive_edge_width", "2605.07870",
          "With extensive outputs the edge of the spectrum still converges for wide networks: under μP the top "
          "singular value and the median of W⁰/√N settle as ν = N/D grows, next to the exact ν = ∞ theory; under "
          "NTK they drift to the lazy limit σ.",
          "eo_width", "width", _eo_width,
          shows="edge and median against ν: ν = ∞ theory (dashed lines), twin points ± std over seeds, μP and NTK"),
    Claim("edge_of_stability", "2605.07870",
          "Under μP the leading eigenvalue of the tangent kernel grows toward the edge of stability 2/η in a "
          "width-stable way; under NTK its dynamics depend strongly on the width.",
          "dl_sharpness_width", "sharpness_width", _dl_sharpness_width,
          shows="theory sharpness(t) per ν (lines, NaN past the crossing of 2/η), twin Lanczos λ_max (mean ± s.e.; "
                "open past the crossing), 2/η (dashed), the ν → ∞ lazy value (dotted); one panel per "
                "parameterization"),
    # 2502.02531 -------------------------------------------------------------------------------------------------
    Claim("deep_linear_losses", "2502.02531",
          "In the proportional limit the train and test losses of a deep linear network trained from random "
          "initialisation follow deterministic DMFT curves.",
          "dl_mup", "losses", _loss_gaps, shows="theory lines, twin mean ± std over seeds"),
    Claim("deep_linear_sgd", "2502.02531",
          "The same holds for one-pass SGD (fresh batches of B = α_B D samples).",
          "dl_sgd", "losses", _loss_gaps, shows="theory lines, twin mean ± std over seeds"),
    Claim("width_mup_ntk", "2502.02531",
          "Wider is better under μP and the curves converge as ν = N/D grows; under NTK scaling they approach the "
          "lazy (kernel-regression) limit.",
          "dl_width", "sweep_losses", _dl_width, shows="theory test loss against t, one colour per ν"),
    # 2205.09653 -------------------------------------------------------------------------------------------------
    Claim("mean_field_losses", "2205.09653",
          "The infinite-width μP network on a finite data set is described by self-consistent kernel DMFT; its "
          "loss dynamics match finite-width networks.",
          "mf_linear", "losses", _loss_gaps, shows="theory lines, twin mean ± std over seeds"),
    Claim("kernel_alignment", "2205.09653",
          "Feature learning: the tangent kernel evolves and aligns with the targets.",
          "mf_linear", "kernels", _mf_kernels,
          shows="kernel alignment and mean diagonal of Φ^ℓ(t,t): theory lines, twin points"),
    Claim("nonlinear_monte_carlo", "2205.09653",
          "For nonlinear activations the single-site processes are solved by Monte Carlo; the predicted outputs "
          "match ReLU networks.",
          "mf_relu", "losses", _mf_relu, shows="theory lines (Monte Carlo), twin mean ± std"),
    Claim("finite_width_convergence", "2205.09653",
          "Finite-width networks converge to the infinite-width DMFT as N grows, under μP (feature learning) and "
          "NTK (lazy) scalings.",
          "mf_width", "width_convergence", _mf_width, shows="max over t of the loss gap against N, log–log"),
    Claim("other_architectures", "2205.09653",
          "The field theory also covers convolutional architectures and other optimizers.",
          status="not reproduced",
          why="the mean_field family implements fully connected networks trained by full-batch GD only"),
    # 2510.01930 -------------------------------------------------------------------------------------------------
    Claim("diagonal_losses", "2510.01930",
          "DMFT predicts the train and test loss of diagonal linear networks at all times.",
          "diag_compare", "losses", _diag_losses,
          shows="DMFT line with ±2 Monte Carlo errors, lazy and fixed-point references, twin mean ± std"),
    Claim("implicit_bias", "2510.01930",
          "Implicit bias: the long-time limit depends on the init scale a (ℓ2-like at large a, ℓ1-like at small a); "
          "small a is slower but generalises better on a sparse teacher.",
          "diag_init_scale", "final_error_vs_init", _diag_fixed_point,
          shows="DMFT final test loss (squares) against the fixed-point oracle (line)"),
    Claim("incremental_learning", "2510.01930",
          "Incremental learning at small init: plateaus whose length scales as log(1/a).",
          "diag_plateaus", "plateaus", _diag_plateaus,
          shows="DMFT losses against τ/log(1/a), with the a → 0 search-phase limit (dashed)"),
    Claim("convergence_rates", "2510.01930",
          "Convergence rates: near the long-time fixed point the loss decays at the lower edge λ_min of the spectrum "
          "of X diag(m)Xᵀ/P (with the t^{−3/2} factor of a square-root edge); large init is faster.",
          status="not reproduced",
          why="checked against the solved DMFT in tests/test_claims_sgd_diag.py (fitted rate −0.1…+6 % from "
              "`late_time_rate` at S = 2000) and drawn by the init-scale sweep's `late_rate_vs_init`, but the gallery "
              "has no job with a measured caption for it yet (the quick horizon does not reach the late phase)"),
    # 2507.12709 -------------------------------------------------------------------------------------------------
    Claim("stationary_laguerre", "2507.12709",
          "Under weight decay the singular values of SGD relax to a stationary law with level repulsion (the "
          "Laguerre ensemble, Marchenko–Pastur edges), not the 1-D gamma law.",
          "sgd_noise", "spectra", _sgd_stationary,
          shows="SDE and SGD histograms at the first and last record, MP at init, stationary law"),
    Claim("exact_sgd_loss", "2507.12709",
          "The matrix SDE with state-dependent noise reproduces SGD's loss, including the exact E|W − W*|² of "
          "one-pass SGD.",
          "sgd_teacher", "moments", _sgd_teacher,
          shows="mean excess test loss of SDE and SGD, exact expectation (dotted)"),
    Claim("spread_sqrt_theta", "2507.12709",
          "The spread of the stationary singular values scales as √(η/B) (the linear scaling rule).",
          "sgd_spread", "spread_vs_theta", _sgd_spread, shows="SDE spread against Θ, √Θ law (dotted)"),
    Claim("gamma_type_law", "2507.12709",
          "The stationary density of the paper's gamma-type law.",
          status="not reproduced",
          why="the paper's normalization is open in the theory notes (provisional law, reported as "
              "gamma_type_shape but not checked)"),
    # 2509.01349 -------------------------------------------------------------------------------------------------
    Claim("sde_matches_sgd", "2509.01349",
          "On the paper's tanh teacher–student network the SDE follows SGD (as η → 0), run by run.",
          "sgd_phase", "moments", _sgd_phase, shows="median train and test loss of SDE and SGD"),
    Claim("phase_diagram", "2509.01349",
          "SGD has ordered, paramagnetic and jammed phases in the (1/σ_W, Θ = η/B) plane, located by the "
          "drift/Coulomb criterion.",
          "sgd_phase_map", "phase_map", _sgd_phase_map,
          shows="SGD majority phase (squares), SDE P_ord contours, jammed lines"),
    Claim("paper_size_phase_diagram", "2509.01349",
          "The paper-size phase diagram (12 × 12 grid, P = 4000, 100 networks per point, 10⁵ epochs).",
          status="not reproduced",
          why="needs a GPU and runs far longer than the gallery's; the gallery shows a 3 × 3 grid "
              "(configs/sweeps/sgd_phase_diagram.toml lists the paper-size settings)"),
)


# ----------------------------------------------------------------------------------------------------------------
# Running the gallery
# ----------------------------------------------------------------------------------------------------------------


def default_out() -> Path:
    """``docs/gallery`` of a source checkout (what the documentation shows), else ``results/gallery``."""
    docs = Path(__file__).resolve().parents[1] / "docs"
    return docs / "gallery" if (docs / "gallery.md").exists() or (docs / "gen_pages.py").exists() else \
        Path("results") / "gallery"


def select(only: list[str] | None = None) -> list[Claim]:
    """The reproducible claims (those with a job), restricted to ``only`` (claim ids or job names) if given."""
    claims = [c for c in CLAIMS if c.job is not None]
    if not only:
        return claims
    known = {c.id for c in claims} | {c.job for c in claims}
    bad = [o for o in only if o not in known]
    if bad:
        import difflib

        from .config import ConfigError

        close = difflib.get_close_matches(bad[0], sorted(known), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"--only {bad[0]!r}: not a gallery claim or job{hint}; `dmft gallery --list` lists them")
    return [c for c in claims if c.id in only or c.job in only]


def _figures(job: Job, res: Any) -> dict[str, Any]:
    """The family's standard figures of one job's result, through the registry."""
    from .families import get_family
    from .io import config_of
    from .plot import figures_for, style

    with style():
        if job.command == "compare":
            theory, sim = res
            return get_family(config_of(theory).model.family).figures(theory, sim)
        return figures_for(res)


def run_gallery(out: str | Path | None = None, quick: bool = False, only: list[str] | None = None,
                log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Run every job, save each claim's figure as ``out/<claim>.png`` and its measured agreement as
    ``out/<claim>.json``; return the records. A job that fails is recorded (``"error"``) and the others still run."""
    import matplotlib.pyplot as plt

    from . import __version__

    out = Path(out) if out is not None else default_out()
    out.mkdir(parents=True, exist_ok=True)
    claims = select(only)
    records = []
    for name in dict.fromkeys(c.job for c in claims):
        job = JOBS[name]
        mine = [c for c in claims if c.job == name]
        t0 = time.perf_counter()
        base = {"job": name, "config": f"configs/{job.config}.toml", "command": command_of(job),
                "quick": quick, "quick_command": command_of(job, quick=True), "version": __version__,
                "date": time.strftime("%Y-%m-%d")}
        try:
            res = _compute(job, quick)
            figs = _figures(job, res)
        except Exception as e:  # keep going: the gallery reports what failed
            for c in mine:
                rec = {**base, "id": c.id, "paper": c.paper, "error": f"{type(e).__name__}: {str(e).splitlines()[0]}"}
                (out / f"{c.id}.json").write_text(json.dumps(rec, indent=1, ensure_ascii=False))
                records.append(rec)
            log(f"{name}: FAILED ({type(e).__name__}: {str(e).splitlines()[0][:200]})")
            continue
        seconds = time.perf_counter() - t0
        for c in mine:
            rec = {**base, "id": c.id, "paper": c.paper, "figure": c.figure, "seconds": round(seconds, 1)}
            try:
                numbers, caption = c.measure(res) if c.measure is not None else ({}, "")
                rec.update(numbers={k: (None if not np.isfinite(v) else float(v)) for k, v in numbers.items()},
                           caption=caption)
            except Exception as e:
                rec["error"] = f"measure: {type(e).__name__}: {str(e).splitlines()[0]}"
            fig = figs.get(c.figure)
            if fig is None:
                rec["error"] = f"figure {c.figure!r} not among {sorted(figs)}"
            else:
                from .plot import style

                with style():
                    fig.savefig(out / f"{c.id}.png", dpi=110)
                rec["png"] = f"{c.id}.png"
            (out / f"{c.id}.json").write_text(json.dumps(rec, indent=1, ensure_ascii=False))
            records.append(rec)
            log(f"{c.id}: {rec.get('caption') or rec.get('error')}")
        for fig in figs.values():
            plt.close(fig)
        log(f"[{name}: {seconds:.1f} s]")
    return records


# ----------------------------------------------------------------------------------------------------------------
# The documentation page
# ----------------------------------------------------------------------------------------------------------------


def _title(claim: Claim) -> str:
    return claim.id.replace("_", " ").capitalize()


def markdown(folder: str | Path, link_prefix: str = "") -> str:
    """The gallery page: every claim of every paper, with the figure and measured caption found in ``folder``
    (written by :func:`run_gallery`); figures not made yet are named with the command that makes them."""
    folder = Path(folder)
    recs: dict[str, dict[str, Any]] = {}
    for c in CLAIMS:
        p = folder / f"{c.id}.json"
        if p.is_file():
            recs[c.id] = json.loads(p.read_text())
    sizes = {r.get("quick") for r in recs.values()}
    size = ("`--quick` sizes" if sizes == {True} else "the shipped sizes" if sizes == {False}
            else "mixed sizes (see each caption)" if recs else "")
    lines = [
        "# Claims gallery",
        "",
        "Every claim of the six papers the library implements, with a figure made from a shipped config "
        "(`configs/figures/`): theory as lines, the finite-width twin as points with error bars, and the agreement "
        "measured when the figure was made. One command remakes every figure and caption:",
        "",
        "```bash",
        "dmft gallery                 # shipped sizes (minutes to tens of minutes on a laptop CPU)",
        "dmft gallery --quick         # small sizes, a few minutes (what CI runs)",
        "dmft gallery --only lr_transfer --out DIR   # one claim (or one job), elsewhere",
        "```",
        "",
        "Claims are taken from the papers' abstracts and from what the library reproduces; the equations are "
        "the library's reconstructions in one set of conventions (see the family pages). "
        + (f"The figures on this page were made with {size}." if size else
           "No figure has been made in this build yet: run `dmft gallery`."),
        "",
        "| paper | claims | reproduced | in progress | not reproduced |",
        "|---|---|---|---|---|",
    ]
    for paper in PAPERS:
        cs = [c for c in CLAIMS if c.paper == paper]
        n = {s: sum(c.status == s for c in cs) for s in ("reproduced", "in progress", "not reproduced")}
        lines.append(f"| [arXiv:{paper}](#arxiv-{paper.replace('.', '')}) | {len(cs)} | {n['reproduced']} | "
                     f"{n['in progress']} | {n['not reproduced']} |")
    for paper, title in PAPERS.items():
        lines += ["", f"## arXiv:{paper} {{#arxiv-{paper.replace('.', '')}}}", "", f"*{title}.*"]
        for c in (c for c in CLAIMS if c.paper == paper):
            lines += ["", f"### {_title(c)}", "", f"**Claim.** {c.text}", ""]
            if c.job is None:
                lines.append(f"**Status: {c.status}.** {c.why[0].upper() + c.why[1:]}.")
                continue
            job = JOBS[c.job]
            lines += [f"Config `configs/{job.config}.toml`; data: `{command_of(job)}`; figure `{c.figure}` "
                      f"({c.shows}).", ""]
            rec = recs.get(c.id)
            if rec is None:
                lines.append(f"*Figure not made yet:* `dmft gallery --only {c.id}`.")
            elif "error" in rec:
                lines.append(f"**Failed when last made** ({rec['date']}): `{rec['error']}`.")
            if rec is not None and "png" in rec:
                lines += [f"![{_title(c)}]({link_prefix}{rec['png']})", ""]
            if rec is not None and rec.get("caption"):
                how = "with `--quick`" if rec.get("quick") else "at the shipped size"
                lines.append(f"*Measured* ({how}, {rec['date']}, dmft-spectra {rec['version']}, {rec['seconds']} s): "
                             f"{rec['caption']}")
    return "\n".join(lines) + "\n"
