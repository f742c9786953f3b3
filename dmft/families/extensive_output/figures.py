r"""Figures of the extensive-output family (matplotlib imported on first use; the library's colour-blind-safe
Okabe–Ito palette, :data:`dmft.plot.PALETTE`).

One result (``FAMILY.figures``):
* ``density`` — the singular-value density at each recorded step: theory lines against twin histograms;
* ``spectrum_change`` — the twin's spectrum at t = 0 and at the last step, with the initial bulk edge;
* ``losses`` — the per-channel test loss.

Several results, or a sweep grid (``FAMILY.sweep_figures``):
* :func:`phenomenon_figure` — C = 1, 3, κD at one width: C outliers escape from an unchanged bulk, against a
  bulk that restructures as a whole (sweep over ``extensive_output.outputs`` or ``outputs_ratio``);
* :func:`width_figure` — edge and median of W⁰/√N against ν under μP and NTK: theory at ν = ∞ (lines), twin
  points ± std over seeds; μP converges, NTK drifts to the lazy limit σ (sweep over ``width_ratio`` ×
  ``parameterization``);
* :func:`frozen_vs_full_figure` — frozen readout (exact Dyson theory) against full GD (ν = ∞ theory or the
  D → ∞ extrapolation): edge and median against t, and the last-step spectra (sweep over
  ``extensive_output.readout``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "figures",
    "sweep_figures",
    "density_figure",
    "spectrum_change_figure",
    "loss_figure",
    "phenomenon_figure",
    "width_figure",
    "frozen_vs_full_figure",
    "sv_label",
    "pair_of",
]

THEORY, TWIN, START, REF = "C0", "C1", "C4", "C7"  # blue, orange, sky blue, black (Okabe–Ito)
PARAM_COLOURS = {"mup": "C0", "ntk": "C3"}  # blue, vermillion
PARAM_NAMES = {"mup": "μP", "ntk": "NTK"}
READOUT_COLOURS = {"frozen": "C2", "trained": "C5"}  # bluish green, reddish purple
MAX_PANELS = 6


def _plt() -> Any:
    from dmft.plot import _plt as plt

    return plt()


def sv_label(units: str | None, what: str = "singular value") -> str:
    """Axis label: ``what`` of W⁰/√D (``input`` units) or of W⁰/√N (``width``), in mathtext."""
    return f"{what} of " + (r"$W^0/\sqrt{N}$" if units == "width" else r"$W^0/\sqrt{D}$")


def _units(*datasets: Any) -> str | None:
    for ds in datasets:
        if ds is not None and ds.attrs.get("units"):
            return str(ds.attrs["units"])
        if ds is not None and ds.attrs.get("extensive_output.units"):
            return str(ds.attrs["extensive_output.units"])
    return None


def _finite(values: Any) -> np.ndarray:
    v = np.asarray(values, dtype=float).ravel()
    return v[np.isfinite(v)]


def _steps(ds: Any, max_panels: int = MAX_PANELS) -> np.ndarray:
    steps = np.asarray(ds["t_spec"].values)
    if steps.size <= max_panels:
        return steps
    pick = np.unique(np.round(np.linspace(0, steps.size - 1, max_panels)).astype(int))
    return steps[pick]


def _twin_label(twin: Any) -> str:
    d = twin.attrs.get("dim")
    n = twin.sizes.get("seed", 1)
    return f"twin (D = {d}, {n} seeds)" if d not in (None, -1) else f"twin ({n} seeds)"


def _theory_label(theory: Any) -> str:
    solver = theory.attrs.get("solver", "")
    return {"dyson": "theory (Dyson, exact)", "infinite_width": r"theory ($\nu = \infty$)",
            "extrapolate": r"twin extrapolated to $D = \infty$"}.get(solver, "theory")


def _has_density(theory: Any) -> bool:
    return theory is not None and "spectrum_density" in theory and bool(np.any(theory["spectrum_density"] > 0))


def pair_of(ds: Any) -> tuple[Any, Any]:
    """(theory, twin) of one result or one sweep point: a comparison is split (``sim_`` names), a Dataset with a
    ``seed`` dimension is a twin, anything else a theory."""
    from dmft.plot import split_compare

    if ds.attrs.get("kind") == "compare" or any(str(v).startswith("sim_") for v in ds.data_vars):
        theory, twin = split_compare(ds)
        return theory, twin
    if "seed" in ds.dims:
        return None, ds
    return ds, None


# ------------------------------------------------------------------------------------------------------------
# One result
# ------------------------------------------------------------------------------------------------------------


def density_figure(theory: Any = None, twin: Any = None) -> Any:
    """Singular-value density at each recorded step (at most six): theory lines (and its edge, dotted) against
    twin histograms (all seeds pooled)."""
    plt = _plt()
    src = theory if theory is not None else twin
    steps = _steps(src)
    units = _units(theory, twin)
    fig, axes = plt.subplots(1, len(steps), figsize=(2.9 * len(steps) + 0.4, 2.9), squeeze=False)
    for ax, t in zip(axes[0], steps, strict=True):
        if twin is not None and t in twin["t_spec"].values:
            sv = _finite(twin["spectrum"].sel(t_spec=t).values)
            if sv.size:
                ax.hist(sv, bins=40, density=True, color=TWIN, alpha=0.55, label=_twin_label(twin))
        if _has_density(theory):
            ax.plot(theory["sv_grid"].sel(t_spec=t), theory["spectrum_density"].sel(t_spec=t), "-", color=THEORY,
                    label=_theory_label(theory))
        if theory is not None and "edge" in theory:
            ax.axvline(float(theory["edge"].sel(t_spec=t)), color=THEORY, ls=":", lw=1.2, label="theory edge")
        if theory is not None and "atom" in theory and float(theory["atom"]) > 0:
            ax.axvline(float(theory["quantiles"].sel(t_spec=t).min()), color=REF, ls="--", lw=1,
                       label=f"atom at σ (mass {float(theory['atom']):.2g})")
        ax.set_title(f"t = {int(t)}")
        ax.set_xlabel(sv_label(units))
        ax.set_ylabel("density")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def spectrum_change_figure(theory: Any = None, twin: Any = None) -> Any:
    """The twin's spectrum at t = 0 and at the last recorded step (histograms, all seeds), the initial bulk edge
    and, when the theory has it, its density at the last step."""
    return phenomenon_figure([("", theory, twin)])


def loss_figure(theory: Any = None, twin: Any = None) -> Any:
    """Per-channel test loss against t: theory line, twin mean ± std over seeds."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    if theory is not None and "test_loss" in theory:
        ax.plot(theory["t"], theory["test_loss"], "-", color=THEORY, label=_theory_label(theory))
        if "test_loss_err" in theory:
            lo = theory["test_loss"] - 3 * theory["test_loss_err"]
            ax.fill_between(theory["t"], lo, theory["test_loss"] + 3 * theory["test_loss_err"], color=THEORY,
                            alpha=0.2, lw=0)
    if twin is not None and "test_loss" in twin:
        m = twin["test_loss"].mean("seed")
        s = twin["test_loss"].std("seed") if twin.sizes["seed"] > 1 else 0 * m
        ax.errorbar(twin["t"], m, yerr=s, fmt="o", ms=3, lw=0.8, color=TWIN, label=_twin_label(twin))
    ax.set_yscale("log")
    ax.set_xlabel("step $t$")
    ax.set_ylabel("per-channel test loss (log scale)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def figures(theory: Any = None, twin: Any = None) -> dict[str, Any]:
    """Standard figures of one result: densities over time, the spectrum change (twin) and the losses."""
    out = {"density": density_figure(theory, twin)}
    if twin is not None:
        out["spectrum_change"] = spectrum_change_figure(theory, twin)
    out["losses"] = loss_figure(theory, twin)
    return out


# ------------------------------------------------------------------------------------------------------------
# The phenomenon: few outputs (outliers) against extensive outputs (restructured bulk)
# ------------------------------------------------------------------------------------------------------------


def _initial_edge(twin: Any, theory: Any) -> float | None:
    """The t = 0 bulk edge σ(1 + √ν) (σ(1 + ν^{-1/2}) in width units) from the config attributes, else the
    theory's t = 0 edge."""
    a = twin.attrs if twin is not None else {}
    try:
        sigma, nu = float(a["model.sigma"]), float(a["model.width_ratio"])
    except (KeyError, TypeError, ValueError):
        return float(theory["edge"].isel(t_spec=0)) if theory is not None and "edge" in theory else None
    return sigma * (1 + nu**-0.5) if _units(twin) == "width" else sigma * (1 + nu**0.5)


def phenomenon_figure(runs: Sequence[tuple[str, Any, Any]], initial_edge: float | None = None) -> Any:
    """One panel per run ``(label, theory or None, twin)``, e.g. C = 1, 3, κD at one width: the twin's spectrum
    at t = 0 and at the last recorded step (histograms, all seeds), the initial bulk edge, the theory density at
    the last step when it has one, and the twin's singular values above the initial edge as markers. The title
    says how many singular values (per network) end above the initial edge and how far the median moved."""
    plt = _plt()
    n = len(runs)
    fig, axes = plt.subplots(1, n, figsize=(3.9 * n + 0.3, 3.2), squeeze=False)
    for ax, (label, theory, twin) in zip(axes[0], runs, strict=True):
        units = _units(twin, theory)
        t0, t1 = twin["t_spec"].values[0], twin["t_spec"].values[-1]
        sv0, sv1 = _finite(twin["spectrum"].sel(t_spec=t0)), _finite(twin["spectrum"].sel(t_spec=t1))
        bins = np.linspace(0.0, 1.05 * max(sv0.max(), sv1.max()), 60)
        ax.hist(sv0, bins=bins, density=True, color=START, alpha=0.6, label=f"twin, t = {int(t0)}")
        ax.hist(sv1, bins=bins, density=True, color=TWIN, alpha=0.55, label=f"twin, t = {int(t1)}")
        if _has_density(theory) and t1 in theory["t_spec"].values:
            ax.plot(theory["sv_grid"].sel(t_spec=t1), theory["spectrum_density"].sel(t_spec=t1), "-", color=THEORY,
                    label=f"{_theory_label(theory)}, t = {int(t1)}")
        edge0 = initial_edge if initial_edge is not None else _initial_edge(twin, theory)
        title = label
        if edge0 is not None:
            ax.axvline(edge0, color=REF, ls="--", lw=1, label="initial bulk edge")
            above = sv1[sv1 > 1.02 * edge0]
            per_net = above.size / max(1, twin.sizes.get("seed", 1))
            if above.size:
                ax.plot(above, np.full(above.size, 0.0), "v", color="C3", ms=5, clip_on=False,
                        label="above the initial edge")
            ratio = np.median(sv1) / np.median(sv0)
            title = f"{label}: " if label else ""
            title += f"{per_net:.3g} above edge, median ×{ratio:.2f}"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(sv_label(units))
        ax.set_ylabel("density")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------------------
# Width: μP converges, NTK drifts to the lazy limit
# ------------------------------------------------------------------------------------------------------------


def width_figure(grid: Any, t: int | None = None) -> Any:
    """Edge and median of the first layer against ν = N/D at step ``t`` (default: the last recorded step), one
    colour per parameterization: the theory at ν = ∞ as a dashed line (μP: mode recursion; NTK: the lazy limit
    σ), the twin at each ν as points ± std over seeds. ``grid`` is a sweep over ``width_ratio`` (and
    ``parameterization``) of kind ``compare`` (``--kind both``), ``theory`` or ``simulation``."""
    plt = _plt()
    theory, twin = pair_of(grid)
    src = twin if twin is not None else theory
    t = int(src["t_spec"].values[-1]) if t is None else int(t)
    params = list(grid["parameterization"].values) if "parameterization" in grid.dims else [None]
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.5))
    nus = np.asarray(grid["width_ratio"].values, dtype=float)
    for p in params:
        colour = PARAM_COLOURS.get(str(p), "C0")
        name = PARAM_NAMES.get(str(p), str(p) if p is not None else "")
        sel = {"parameterization": p} if p is not None else {}
        for ax, what in zip(axes, ("edge", "median"), strict=True):
            if theory is not None and "edge" in theory:
                th = theory.sel(sel)
                val = th["edge"] if what == "edge" else th["quantiles"].sel(q=0.5)
                val = np.asarray(val.sel(t_spec=t).values, dtype=float)
                limit = np.nanmedian(val)  # the ν = ∞ value is the same at every swept ν
                ax.axhline(limit, color=colour, ls="--", lw=1.2, label=rf"{name}, theory $\nu = \infty$")
            if twin is not None:
                tw = twin.sel(sel)
                val = tw["edge"] if what == "edge" else tw["quantiles"].sel(q=0.5)
                val = val.sel(t_spec=t)
                m, s = val.mean("seed").values, val.std("seed").values
                ax.errorbar(nus, m, yerr=s, fmt="o-", ms=4, lw=1, capsize=2, color=colour,
                            label=f"{name}, twin (D = {_grid_dim(grid)}, ± std over seeds)")
    for ax, what in zip(axes, ("top singular value (edge)", "median singular value"), strict=True):
        ax.set_xscale("log", base=2)
        ax.set_xlabel(r"$\nu = N/D$")
        ax.set_ylabel(sv_label("width", what))
        ax.set_title(f"{what.split(' (')[0]}, t = {t}")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def _grid_dim(grid: Any) -> str:
    d = grid.attrs.get("simulate.dim", grid.attrs.get("sim_dim"))
    return str(d) if d not in (None, -1) else "?"


# ------------------------------------------------------------------------------------------------------------
# Frozen readout against full GD
# ------------------------------------------------------------------------------------------------------------


def frozen_vs_full_figure(runs: dict[str, tuple[Any, Any]]) -> Any:
    """``runs = {"frozen": (theory, twin), "trained": (theory, twin)}`` (either may lack a theory or a twin):
    edge and median against t — theory lines (frozen: Dyson, exact at this ν; full GD: ν = ∞ limit or the D → ∞
    extrapolation), twin points ± std over seeds — and the last-step twin spectra. Use the same ``units`` for
    both (``width`` for a full-GD theory at ν = ∞)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(12.5, 3.4))
    units = None
    for readout, (theory, twin) in runs.items():
        colour = READOUT_COLOURS.get(readout, "C0")
        name = "frozen readout" if readout == "frozen" else "full GD"
        units = units or _units(theory, twin)
        for ax, what in zip(axes[:2], ("edge", "median"), strict=True):
            if theory is not None and "edge" in theory:
                val = theory["edge"] if what == "edge" else theory["quantiles"].sel(q=0.5)
                ax.plot(theory["t_spec"], val, "-", color=colour, label=f"{name}: {_theory_label(theory)}")
            if twin is not None:
                val = twin["edge"] if what == "edge" else twin["quantiles"].sel(q=0.5)
                s = val.std("seed") if twin.sizes["seed"] > 1 else 0 * val.mean("seed")
                ax.errorbar(twin["t_spec"], val.mean("seed"), yerr=s, fmt="o", ms=4, lw=1, capsize=2, color=colour,
                            mfc="white", label=f"{name}: {_twin_label(twin)}")
        if twin is not None:
            sv = _finite(twin["spectrum"].isel(t_spec=-1))
            axes[2].hist(sv, bins=50, density=True, color=colour, alpha=0.5,
                         label=f"{name}, t = {int(twin['t_spec'].values[-1])}")
    for ax, what in zip(axes[:2], ("top singular value (edge)", "median singular value"), strict=True):
        ax.set_xlabel("step $t$")
        ax.set_ylabel(sv_label(units, what))
        ax.legend(fontsize=7)
    axes[2].set_xlabel(sv_label(units))
    axes[2].set_ylabel("density")
    axes[2].set_title("twin spectra at the last step")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------------------
# Sweeps
# ------------------------------------------------------------------------------------------------------------


def _points(grid: Any, axis: str) -> list[tuple[Any, Any]]:
    """(value, point Dataset) along ``axis``, the other sweep axes at their first value."""
    axes = [a.split(".", 1)[-1] for a in str(grid.attrs.get("sweep_axes", "")).split(",") if a]
    sel = {d: 0 for d in axes if d in grid.dims and d != axis}
    out = []
    for v in grid[axis].values:
        point = grid.isel(sel).sel({axis: v})
        point.attrs = dict(grid.attrs)
        out.append((v, point))
    return out


def sweep_figures(grid: Any) -> dict[str, Any]:
    """Figures of a sweep grid: ``width`` (over ``width_ratio``), ``phenomenon`` (over ``outputs`` or
    ``outputs_ratio``), ``frozen_vs_full`` (over ``readout``), and the library's loss curves for any grid."""
    from dmft.plot import sweep_loss_figure

    figs: dict[str, Any] = {}
    dims = set(grid.dims)
    if "width_ratio" in dims and ("edge" in grid or "sim_edge" in grid):
        figs["width"] = width_figure(grid)
    for axis in ("outputs", "outputs_ratio"):
        if axis in dims and ("sim_spectrum" in grid or "spectrum" in grid):
            runs = []
            for v, point in _points(grid, axis):
                theory, twin = pair_of(point)
                if twin is not None:
                    label = f"C = {int(v)}" if axis == "outputs" else rf"$\kappa = {float(v):g}$"
                    runs.append((label, theory, twin))
            if runs:
                figs["phenomenon"] = phenomenon_figure(runs)
    if "readout" in dims:
        figs["frozen_vs_full"] = frozen_vs_full_figure({str(v): pair_of(p) for v, p in _points(grid, "readout")})
    name = "test_loss" if "test_loss" in grid else "sim_test_loss"
    if name in grid:
        figs["sweep_losses"] = sweep_loss_figure(grid, name)
    return figs
