"""Standard figures (matplotlib is imported on first use).

Theory is drawn as lines; finite-width twins as their mean over seeds with a ±1 standard-deviation band.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

__all__ = [
    "loss_figure", "sweep_loss_figure", "spectrum_figure", "outlier_trajectory_figure", "sharpness_figure",
    "outliers_vs_width_figure", "lr_transfer_figure", "figures_for", "merge_compare", "split_compare",
]

SIM_PREFIX = "sim_"


def _plt() -> Any:
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _band(ax: Any, t: np.ndarray, runs: xr.DataArray, color: str, label: str) -> None:
    mean = runs.mean("seed").values
    std = runs.std("seed").values if runs.sizes["seed"] > 1 else np.zeros_like(mean)
    ax.plot(t, mean, "o", ms=3, color=color, label=label)
    ax.fill_between(t, mean - std, mean + std, color=color, alpha=0.2, lw=0)


def loss_figure(theory: xr.Dataset | None = None, sim: xr.Dataset | None = None, logy: bool = True) -> Any:
    """Train and test loss against t: theory lines, simulation mean ± std over seeds."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharex=True)
    for ax, name in zip(axes, ("train_loss", "test_loss"), strict=True):
        if theory is not None and name in theory:
            ax.plot(theory["t"].values, theory[name].values, "-", color="C0", label="DMFT")
        if sim is not None and name in sim:
            _band(ax, sim["t"].values, sim[name], "C1", f"twin ({twin_size(sim)}, {sim.sizes['seed']} seeds)")
        ax.set_xlabel("step t")
        ax.set_title(name.replace("_", " "))
        if logy:
            ax.set_yscale("log")
        ax.legend(fontsize=8)
    for ds in (theory, sim):
        if ds is not None and bool(np.any(ds.get("diverged", False))):
            fig.suptitle("diverged: learning rate past stability", color="red")
    fig.tight_layout()
    return fig


def spectrum_figure(sim: xr.Dataset, bulk: dict[int, Any] | None = None, outliers: xr.DataArray | None = None) -> Any:
    """Histograms of simulated singular values of every weight matrix at the first and last recorded steps.

    ``bulk`` maps a layer to a callable s ↦ density (theory bulk); ``outliers`` (dims layer, t, k) are drawn as
    vertical lines at the last step.
    """
    plt = _plt()
    layers = sim["layer"].values
    steps = sim["t_spec"].values[[0, -1]] if sim.sizes["t_spec"] > 1 else sim["t_spec"].values
    fig, axes = plt.subplots(len(steps), len(layers), figsize=(3.4 * len(layers), 2.6 * len(steps)), squeeze=False)
    for r, ts in enumerate(steps):
        for c, layer in enumerate(layers):
            ax = axes[r, c]
            sv = sim["spectrum"].sel(t_spec=ts, layer=layer).values.ravel()
            sv = sv[np.isfinite(sv)]
            ax.hist(sv, bins=60, density=True, color="C1", alpha=0.6, label="twin")
            if bulk is not None and layer in bulk:
                s = np.linspace(1e-6, sv.max() * 1.05, 400)
                ax.plot(s, bulk[layer](s), "C0-", lw=1.2, label="bulk law")
            if outliers is not None and r == len(steps) - 1:
                vals = outliers.sel(layer=layer).sel(t=ts, method="nearest").values
                for v in vals[np.isfinite(vals)]:
                    ax.axvline(v, color="C3", lw=1)
            ax.set_yscale("log")
            ax.set_title(f"W^{layer}, t = {ts}", fontsize=9)
            ax.set_xlabel("singular value")
            if r == 0 and c == 0:
                ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def evaluated_steps(out: xr.DataArray, ds: xr.Dataset) -> xr.DataArray:
    """Keep the steps at which level 2 was evaluated (``outlier_evaluated``), so lines join across the others."""
    if "outlier_evaluated" not in ds:
        return out
    flags = ds["outlier_evaluated"]
    flags = flags.isel({d: 0 for d in flags.dims if d != "t"})
    return out.isel(t=np.flatnonzero(flags.values))


def outlier_trajectory_figure(theory: xr.Dataset | None, sim: xr.Dataset | None, n_top: int = 3) -> Any:
    """Outlier singular values against t for every weight matrix: theory lines (and bulk edge), twin top singular
    values at the recorded steps (mean ± std over seeds)."""
    plt = _plt()
    src = theory if theory is not None else sim
    layers = src["layer"].values
    fig, axes = plt.subplots(1, len(layers), figsize=(3.8 * len(layers), 3.4), squeeze=False)
    for ax, layer in zip(axes[0], layers, strict=True):
        if theory is not None and "outlier_sv" in theory:
            out = evaluated_steps(theory["outlier_sv"].sel(layer=layer), theory)
            for k in out["k"].values:
                label = "DMFT outliers" if k == 0 else None
                ax.plot(out["t"].values, out.sel(k=k).values, "C0-", lw=1.5, label=label)
            ax.axhline(float(theory["bulk_edge"].sel(layer=layer)), color="k", ls="--", lw=0.8, label="bulk edge")
        if sim is not None and "spectrum" in sim and sim.sizes.get("i", 0) > 0:
            spec = sim["spectrum"].sel(layer=layer).isel(i=slice(0, n_top))
            mean, std = spec.mean("seed").values, spec.std("seed").values
            for j in range(mean.shape[1]):
                ax.errorbar(sim["t_spec"].values, mean[:, j], yerr=std[:, j], fmt="o", ms=3, color="C1",
                            label="twin top singular values" if j == 0 else None)
        ax.set_title(f"W^{layer}")
        ax.set_xlabel("step t")
        ax.set_ylabel("singular value")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def sharpness_figure(
    theory: xr.Dataset | None, sim: xr.Dataset, reference: float | None = None,
    reference_label: str = "ν → ∞ value at t = 0",
) -> Any:
    """Largest tangent-kernel eigenvalue of the twin against t, with the stability bound 2/η and an optional
    theory ``reference`` line."""
    plt = _plt()
    from .io import config_of

    cfg = config_of(sim)
    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    _band(ax, sim["t_spec"].values, sim["sharpness"], "C1", "twin λ_max(K̃)")
    ax.axhline(2 / cfg.optim.lr, color="C3", ls="--", label="2/η (edge of stability)")
    if reference is not None:
        ax.axhline(reference, color="C0", ls=":", label=reference_label)
    ax.set_xlabel("step t")
    ax.set_ylabel("sharpness")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _panels(grid: xr.Dataset) -> list[dict]:
    return [{"parameterization": v} for v in grid["parameterization"].values] if "parameterization" in grid.dims \
        else [{}]


def outliers_vs_width_figure(grid: xr.Dataset) -> Any:
    """Top outlier of every weight matrix against t, one colour per width ratio; one row per parameterization.
    Twin top singular values (``sim_spectrum``) as points."""
    plt = _plt()
    panels = _panels(grid)
    layers = grid["layer"].values
    widths = grid["width_ratio"].values
    cmap = plt.get_cmap("viridis")
    fig, axes = plt.subplots(len(panels), len(layers), figsize=(3.8 * len(layers), 3.0 * len(panels)),
                             squeeze=False)
    for r, sel in enumerate(panels):
        for c, layer in enumerate(layers):
            ax = axes[r, c]
            for i, nu in enumerate(widths):
                color = cmap(i / max(1, len(widths) - 1))
                pick = {**sel, "width_ratio": nu, "layer": layer}
                out = evaluated_steps(grid["outlier_sv"].sel(pick).isel(k=0), grid)
                extra = [d for d in out.dims if d != "t"]
                out = out.isel({d: 0 for d in extra})
                ax.plot(out["t"].values, out.values, color=color, label=f"ν = {nu}")
                if "sim_spectrum" in grid:
                    sp = grid["sim_spectrum"].sel(pick).isel(i=0)
                    extra = [d for d in sp.dims if d not in ("t_spec", "seed")]
                    sp = sp.isel({d: 0 for d in extra})
                    ax.errorbar(grid["t_spec"].values, sp.mean("seed").values, yerr=sp.std("seed").values,
                                fmt="o", ms=3, color=color)
            ax.set_title(f"W^{layer}" + (f", {sel['parameterization']}" if sel else ""), fontsize=9)
            ax.set_xlabel("step t")
            ax.set_ylabel("top outlier")
            if r == 0 and c == 0:
                ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def lr_transfer_figure(grid: xr.Dataset, name: str = "test_loss") -> Any:
    """Final loss against the learning rate, one curve per width ratio, one panel per parameterization.
    Diverged points are left out (and marked ×). Twin means (``sim_`` variables) as points."""
    plt = _plt()
    panels = _panels(grid)
    widths = grid["width_ratio"].values
    lrs = grid["lr"].values
    cmap = plt.get_cmap("viridis")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.6), squeeze=False)
    for ax, sel in zip(axes[0], panels, strict=True):
        for i, nu in enumerate(widths):
            color = cmap(i / max(1, len(widths) - 1))
            if name in grid:
                final = grid[name].sel({**sel, "width_ratio": nu}).isel(t=-1)
                final = final.isel({d: 0 for d in final.dims if d != "lr"})
                ax.plot(lrs, final.values, "-", color=color, label=f"ν = {nu}")
                if "diverged" in grid:
                    div = grid["diverged"].sel({**sel, "width_ratio": nu})
                    div = div.isel({d: 0 for d in div.dims if d != "lr"}).values.astype(bool)
                    if div.any():
                        ax.plot(lrs[div], np.full(div.sum(), np.nanmax(final.values) if np.isfinite(final).any()
                                                  else 1.0), "x", color=color)
            if "sim_" + name in grid:
                sim = grid["sim_" + name].sel({**sel, "width_ratio": nu}).isel(t=-1)
                sim = sim.isel({d: 0 for d in sim.dims if d not in ("lr", "seed")})
                ax.errorbar(lrs, sim.mean("seed").values, yerr=sim.std("seed").values, fmt="o", ms=3,
                            color=color)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("learning rate η")
        ax.set_ylabel(f"final {name.replace('_', ' ')}")
        ax.set_title(sel.get("parameterization", ""), fontsize=9)
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def sweep_loss_figure(grid: xr.Dataset, name: str = "test_loss") -> Any:
    """Loss curves over a sweep: one panel per value of the second axis (if any), colour = first axis."""
    plt = _plt()
    axes_names = [d for d in grid[name].dims if d not in ("t", "seed")]
    if not axes_names:
        return loss_figure(grid)
    first = axes_names[0]
    rest = axes_names[1:]
    panels = [{}] if not rest else [{rest[0]: v} for v in grid[rest[0]].values]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    cmap = plt.get_cmap("viridis")
    for ax, sel in zip(axes[0], panels, strict=True):
        sub = grid[name].sel(sel)
        for i, v in enumerate(grid[first].values):
            curve = sub.sel({first: v})
            extra = [d for d in curve.dims if d not in ("t", "seed")]
            if extra:
                curve = curve.isel({d: 0 for d in extra})
            if "seed" in curve.dims:
                curve = curve.mean("seed")
            ax.plot(grid["t"].values, curve.values, color=cmap(i / max(1, grid.sizes[first] - 1)),
                    label=f"{first} = {v}")
        ax.set_yscale("log")
        ax.set_xlabel("step t")
        ax.set_ylabel(name.replace("_", " "))
        ax.set_title(", ".join(f"{k} = {v}" for k, v in sel.items()) or name)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def twin_size(sim: xr.Dataset) -> str:
    """"D=…" (proportional families, input dimension) or "N=…" (mean field, hidden width) of a twin Dataset."""
    if sim.attrs.get("width") is not None and sim.attrs.get("dim") in (None, -1):
        return f"N={sim.attrs['width']}"
    return f"D={sim.attrs.get('dim')}"


def merge_compare(theory: xr.Dataset, sim: xr.Dataset) -> xr.Dataset:
    """One Dataset holding theory (names unchanged) and twin (names prefixed ``sim_``), for a single file."""
    renamed = sim.rename({v: SIM_PREFIX + v for v in sim.data_vars})
    out = xr.merge([theory, renamed], compat="override", join="outer", combine_attrs="override")
    out.attrs = dict(theory.attrs)
    out.attrs["kind"] = "compare"
    out.attrs["sim_dim"] = sim.attrs.get("dim", -1)
    if "width" in sim.attrs:
        out.attrs["sim_width"] = sim.attrs["width"]
    return out


def split_compare(ds: xr.Dataset) -> tuple[xr.Dataset, xr.Dataset]:
    """Inverse of :func:`merge_compare`."""
    sim_vars = [v for v in ds.data_vars if v.startswith(SIM_PREFIX)]
    theory = ds.drop_vars(sim_vars)
    theory = theory.drop_dims([d for d in ("seed", "t_spec", "i") if d in theory.dims and
                               not any(d in theory[v].dims for v in theory.data_vars)])
    sim = ds[sim_vars].rename({v: v[len(SIM_PREFIX):] for v in sim_vars})
    sim.attrs = dict(ds.attrs)
    sim.attrs["dim"] = ds.attrs.get("sim_dim")
    if "sim_width" in ds.attrs:
        sim.attrs["width"] = ds.attrs["sim_width"]
    return theory, sim


def figures_for(ds: xr.Dataset) -> dict[str, Any]:
    """The standard figures of any saved result (run, simulate, compare or sweep)."""
    from .families import get_family
    from .io import config_of

    family = get_family(config_of(ds).model.family)
    kind = ds.attrs.get("kind", "theory")
    if ds.attrs.get("sweep_axes"):
        if family.sweep_figures is not None:
            return family.sweep_figures(ds)
        name = "test_loss" if "test_loss" in ds else next(iter(ds.data_vars))
        return {"sweep": sweep_loss_figure(ds, name)}
    if kind == "compare":
        theory, sim = split_compare(ds)
        return family.figures(theory, sim)
    if kind == "simulation":
        return family.figures(None, ds)
    return family.figures(ds, None)
