"""Figures of the mean-field family: losses, kernel alignment, Φ^ℓ(t,t), outliers; sweeps over γ0, σ and width."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from ...plot import evaluated_steps, layer_label

__all__ = ["figures", "sweep_figures"]


def _band(ax: Any, t: np.ndarray, runs: xr.DataArray, color: str, label: str | None) -> None:
    """Twin: mean over seeds as points with ±1 std error bars."""
    mean = runs.mean("seed").values
    std = runs.std("seed").values if runs.sizes["seed"] > 1 else np.zeros_like(mean)
    ax.errorbar(t, mean, yerr=std, fmt="o", ms=3, lw=0.8, color=color, label=label)


def _twin_label(sim: xr.Dataset) -> str:
    n = int(sim["twin_width"]) if "twin_width" in sim else sim.attrs.get("width", "?")
    return f"twin (N={n}, {sim.sizes['seed']} seeds)"


def alignment_figure(theory: xr.Dataset | None, sim: xr.Dataset | None) -> Any:
    """Tangent-kernel alignment yᵀKy/(‖K‖|y|²) and the mean diagonal of Φ^ℓ(t,t) against t."""
    from ...plot import _plt

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    if theory is not None:
        axes[0].plot(theory["t"], theory["ntk_alignment"], "-", color="C0", label="DMFT")
    if sim is not None:
        _band(axes[0], sim["t"].values, sim["ntk_alignment"], "C1", _twin_label(sim))
    axes[0].set(xlabel="step t", ylabel=r"$y^\top K y/(\|K\|\,|y|^2)$", title="tangent-kernel alignment")
    for ds, style in ((theory, "-"), (sim, "o")):
        if ds is None:
            continue
        diag = ds["Phi_diag"].isel(point=slice(None), point2=slice(None))
        trace = xr.apply_ufunc(lambda a: np.trace(a, axis1=-2, axis2=-1) / a.shape[-1], diag,
                               input_core_dims=[["point", "point2"]])
        if "seed" in trace.dims:
            trace = trace.mean("seed")
        for j, layer in enumerate(trace["layer_phi"].values):
            axes[1].plot(trace["t"], trace.sel(layer_phi=layer), style, ms=3, color=f"C{j}",
                         label=f"ℓ={layer}" if ds is theory or theory is None else None)
    axes[1].set(xlabel="step t", ylabel=r"$\mathrm{tr}\,\Phi^\ell(t,t)/P$",
                title=r"mean diagonal of $\Phi^\ell(t,t)$ (lines: DMFT, points: twin)")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def outlier_figure(theory: xr.Dataset | None, sim: xr.Dataset | None) -> Any:
    """Outlier singular values of each hidden matrix (theory lines) and the twin's top singular values."""
    from ...plot import _plt

    plt = _plt()
    ref = theory if theory is not None and "outlier_sv" in theory else sim
    layers = ref["layer"].values
    fig, axes = plt.subplots(1, len(layers), figsize=(4.2 * len(layers), 3.4), squeeze=False)
    for c, layer in enumerate(layers):
        ax = axes[0, c]
        if theory is not None and "outlier_sv" in theory:
            sv = evaluated_steps(theory["outlier_sv"].sel(layer=layer), theory)
            for k in sv["k"].values:
                ax.plot(sv["t"], sv.sel(k=k), "-", color="C0", label="DMFT outliers" if k == 0 else None)
            ax.axhline(float(theory["bulk_edge"].sel(layer=layer)), color="k", lw=0.8, ls="--", label="bulk edge")
        if sim is not None and "top_sv" in sim:
            top = sim["top_sv"].sel(layer=layer)
            for k in top["k"].values:
                _band(ax, top["t_spec"].values, top.sel(k=k), "C1", _twin_label(sim) if k == 0 else None)
        ax.set(xlabel="step t", ylabel="singular value", title=layer_label(layer, normalized=True))
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def figures(theory: xr.Dataset | None = None, sim: xr.Dataset | None = None) -> dict:
    """Losses, kernel alignment and Φ^ℓ(t,t); outlier trajectories when computed (theory and twin overlaid)."""
    from ...plot import loss_figure

    figs = {"losses": loss_figure(theory, sim), "kernels": alignment_figure(theory, sim)}
    if (theory is not None and "outlier_sv" in theory) or (sim is not None and "top_sv" in sim):
        figs["outliers"] = outlier_figure(theory, sim)
    return figs


def _curves(grid: xr.Dataset, name: str, axis: str, ax: Any, title: str) -> None:
    da = grid[name]
    other = [d for d in da.dims if d not in ("t", axis, "seed")]
    if other:
        da = da.isel({d: 0 for d in other})
    if "seed" in da.dims:
        da = da.mean("seed")
    for j, val in enumerate(da[axis].values):
        ax.plot(da["t"], da.sel({axis: val}), "-", color=f"C{j % 10}", label=f"{axis}={val}")
    ax.set(xlabel="step t", ylabel=name.replace("sim_", "twin ").replace("_", " ") + " (log scale)", title=title,
           yscale="log")
    ax.legend(fontsize=7)


def _loss_sweep_figures(grid: xr.Dataset) -> dict:
    """Losses against t for each swept γ0, σ or lr."""
    from ...plot import _plt

    plt = _plt()
    figs: dict = {}
    loss = "train_loss" if "train_loss" in grid else "sim_train_loss"
    for axis in ("gamma0", "sigma", "lr"):
        if axis in grid.dims and loss in grid:
            fig, ax = plt.subplots(figsize=(5, 3.6))
            _curves(grid, loss, axis, ax, f"{loss.replace('_', ' ')} for several {axis}")
            figs[f"losses_vs_{axis}"] = fig
    return figs


def _width_convergence_figure(grid: xr.Dataset) -> Any:
    """max_t |twin − DMFT| of the train loss against the swept ``width`` (one line per other swept value)."""
    from ...plot import _plt

    fig, ax = _plt().subplots(figsize=(5, 3.6))
    gap = np.abs(grid["sim_train_loss"].mean("seed") - grid["train_loss"]).max("t")
    other = [d for d in gap.dims if d != "width"]
    groups = [gap] if not other else [gap.isel({other[0]: i}) for i in range(gap.sizes[other[0]])]
    for j, g in enumerate(groups):
        g = g.isel({d: 0 for d in g.dims if d != "width"})
        label = f"{other[0]}={g[other[0]].values}" if other else "twin vs DMFT"
        ax.loglog(g["width"], g, "o-", color=f"C{j}", label=label)
    ax.set(xlabel="width N", ylabel="max_t |loss gap|", title="finite-width convergence")
    ax.legend(fontsize=7)
    return fig


def _outlier_sweep_figure(grid: xr.Dataset, axis: str) -> Any | None:
    """The leading outlier of M^1 (theory) or the twin's top singular value against t for each swept value."""
    from ...plot import _plt

    name = "outlier_sv" if "outlier_sv" in grid else None
    if axis == "width" or name is None:
        name = "sim_top_sv" if "sim_top_sv" in grid else name
    if name is None:
        return None
    da = grid[name].sel(layer=grid["layer"].values[0]).isel(k=0)
    if "seed" in da.dims:
        da = da.mean("seed")
    time = "t_spec" if name.startswith("sim_") else "t"
    if time == "t":
        da = evaluated_steps(da, grid)
    panel = "parameterization" if "parameterization" in da.dims else None
    keys = list(da[panel].values) if panel else [None]
    fig, axes = _plt().subplots(1, len(keys), figsize=(4.6 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        sub = da.sel({panel: key}) if panel else da
        sub = sub.isel({d: 0 for d in sub.dims if d not in (time, axis)})
        for j, val in enumerate(sub[axis].values):
            ax.plot(sub[time], sub.sel({axis: val}), "o-", ms=3, color=f"C{j % 10}", label=f"{axis}={val}")
        what = "twin top singular value" if name.startswith("sim_") else "DMFT leading outlier"
        ax.set(xlabel="step t", ylabel="singular value", title=f"{what} of M^1" + (f" ({key})" if panel else ""))
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def sweep_figures(grid: xr.Dataset) -> dict:
    """Losses against t for each swept γ0 (or σ, lr); finite-width convergence of the twin towards the theory
    against ``width``; outlier trajectories against γ0, σ and width."""
    figs = _loss_sweep_figures(grid)
    if "width" in grid.dims and "train_loss" in grid and "sim_train_loss" in grid:
        figs["width_convergence"] = _width_convergence_figure(grid)
    for axis in ("gamma0", "sigma", "width"):
        if axis in grid.dims and (fig := _outlier_sweep_figure(grid, axis)) is not None:
            figs[f"outliers_vs_{axis}"] = fig
    return figs
