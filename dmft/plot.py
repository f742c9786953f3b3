"""Standard figures (matplotlib is imported on first use).

Theory is drawn as lines; finite-width twins as their mean over seeds with a ±1 standard-deviation band.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

__all__ = [
    "PALETTE", "STYLE", "style", "use_style", "layer_label",
    "loss_figure", "sweep_loss_figure", "spectrum_figure", "outlier_trajectory_figure", "sharpness_figure",
    "outliers_vs_width_figure", "lr_transfer_figure", "figures_for", "merge_compare", "split_compare",
]

SIM_PREFIX = "sim_"

#: Okabe–Ito colours (safe for the common colour-vision deficiencies): C0 blue = theory, C1 orange = twin,
#: C2 green, C3 vermillion (references such as 2/η and outliers), then sky blue, reddish purple, yellow, black.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#F0E442", "#000000")

#: rcParams of every standard figure (applied by :func:`style`; sequential maps stay viridis, also safe).
STYLE = {
    "axes.prop_cycle": None,  # set on first use (cycler is imported with matplotlib)
    "image.cmap": "viridis",
    "legend.fontsize": 8,
    "legend.framealpha": 0.85,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "figure.dpi": 100,
    "mathtext.fontset": "dejavusans",
}


def _style_params() -> dict[str, Any]:
    from cycler import cycler

    return {**STYLE, "axes.prop_cycle": cycler(color=list(PALETTE))}


def style() -> Any:
    """Context manager: the library's figure style (colour-blind-safe palette, sizes); every standard figure made
    through :func:`figures_for`, the CLI and the gallery is drawn inside it."""
    import matplotlib

    return matplotlib.rc_context(_style_params())


def use_style() -> None:
    """Apply :func:`style` to the whole session (for notebooks: figures made by direct calls look the same)."""
    import matplotlib

    matplotlib.rcParams.update(_style_params())


def layer_label(layer: int, normalized: bool = False) -> str:
    """Mathtext name of a weight matrix: $W^{0}$, or $M^{1} = W^{1}/\\sqrt{N}$ when ``normalized``."""
    return f"$M^{{{layer}}} = W^{{{layer}}}/\\sqrt{{N}}$" if normalized else f"$W^{{{layer}}}$"


def _plt() -> Any:
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _band(ax: Any, t: np.ndarray, runs: xr.DataArray, color: str, label: str | None) -> None:
    """Twin: mean over seeds as points with ±1 std error bars (at most about 40 of them)."""
    runs = runs.where(np.isfinite(runs))  # draw what is finite: a diverged seed's inf is left out
    mean = runs.mean("seed").values
    std = runs.std("seed").values if runs.sizes["seed"] > 1 else np.zeros_like(mean)
    every = max(1, len(t) // 40)
    ax.errorbar(t[::every], mean[::every], yerr=std[::every], fmt="o", ms=3, lw=0.8, color=color, label=label)


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
        ax.set_ylabel(name.replace("_", " ") + (" (log scale)" if logy else ""))
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
            if sv.size:
                ax.hist(sv, bins=60, density=True, color="C1", alpha=0.6, label="twin")
            else:  # every network diverged before this step: nothing finite to draw
                ax.text(0.5, 0.5, "diverged: no finite values", ha="center", va="center", transform=ax.transAxes,
                        fontsize=8, color="red")
            if bulk is not None and layer in bulk and sv.size:
                s = np.linspace(1e-6, sv.max() * 1.05, 400)
                ax.plot(s, bulk[layer](s), "C0-", lw=1.2, label="bulk law")
            if outliers is not None and r == len(steps) - 1:
                vals = outliers.sel(layer=layer).sel(t=ts, method="nearest").values
                for j, v in enumerate(vals[np.isfinite(vals)]):
                    ax.axvline(v, color="C3", lw=1, label="DMFT outliers" if j == 0 else None)
            ax.set_yscale("log")
            ax.set_title(f"{layer_label(layer)}, t = {ts}", fontsize=9)
            ax.set_xlabel("singular value")
            ax.set_ylabel("density (log scale)")
            if c == 0 and r == len(steps) - 1 and ax.get_legend_handles_labels()[0]:
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
        ax.set_title(layer_label(layer))
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
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    _band(ax, sim["t_spec"].values, sim["sharpness"], "C1", r"twin $\lambda_{\max}(\tilde K)$")
    ax.axhline(2 / cfg.optim.lr, color="C3", ls="--", label=r"$2/\eta$ (edge of stability)")
    if reference is not None:
        ax.axhline(reference, color="C0", ls=":", label=reference_label)
    ax.set_xlabel("step t")
    ax.set_ylabel(r"sharpness $\lambda_{\max}(\tilde K)$")
    # outside the axes: the legend must not hide the 2/η line
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
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
            ax.set_title(layer_label(layer) + (f", {sel['parameterization']}" if sel else ""), fontsize=9)
            ax.set_xlabel("step t")
            ax.set_ylabel("top outlier (singular value)")
            if r == 0 and c == 0:
                handles, labels = ax.get_legend_handles_labels()
                if "sim_spectrum" in grid:
                    from matplotlib.lines import Line2D

                    handles += [Line2D([], [], color="0.3"),
                                Line2D([], [], color="0.3", marker="o", ls="none", ms=3)]
                    labels += ["DMFT (lines)", "twin top singular value"]
                ax.legend(handles, labels, fontsize=6)
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
        from matplotlib.ticker import NullFormatter

        ax.set_xticks(lrs, [f"{x:g}" for x in lrs], fontsize=7)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("learning rate η (log scale)")
        ax.set_ylabel(f"final {name.replace('_', ' ')} (log scale)")
        ax.set_title(sel.get("parameterization", ""), fontsize=9)
        handles, labels = ax.get_legend_handles_labels()
        if "sim_" + name in grid:
            from matplotlib.lines import Line2D

            handles += [Line2D([], [], color="0.3"), Line2D([], [], color="0.3", marker="o", ls="none", ms=3)]
            labels += ["DMFT (lines)", "twin mean ± std"]
        if "diverged" in grid and bool(np.any(grid["diverged"].values)):
            from matplotlib.lines import Line2D

            handles.append(Line2D([], [], color="0.3", marker="x", ls="none"))
            labels.append("diverged")
        ax.legend(handles, labels, fontsize=6)
    fig.tight_layout()
    return fig


def sweep_loss_figure(grid: xr.Dataset, name: str = "test_loss", max_panels: int = 30) -> Any:
    """Loss curves over a sweep: colour = the first sweep axis; one panel per combination of the values of every
    other axis (none is dropped), wrapped into rows; twin means (``sim_`` variables) as points with ±1 std bars.
    The figure stays within 16 × 12 in; beyond ``max_panels`` panels the remaining ones are left out and the
    figure says so."""
    import itertools
    import math

    plt = _plt()
    axes_names = [d for d in grid[name].dims if d not in ("t", "seed")]
    if not axes_names:
        return loss_figure(grid)
    first, rest = axes_names[0], axes_names[1:]
    panels = [dict(zip(rest, vals, strict=True)) for vals in itertools.product(*(grid[d].values for d in rest))]
    shown = panels[:max_panels]
    ncols = min(len(shown), 4)
    nrows = math.ceil(len(shown) / ncols)
    w, h = min(3.6, 15.5 / ncols), min(2.9, 11.0 / nrows)
    fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols + 1.6, h * nrows + 0.4), squeeze=False,
                             sharex=True, sharey=True)
    cmap = plt.get_cmap("viridis")
    twin = SIM_PREFIX + name if not name.startswith(SIM_PREFIX) and SIM_PREFIX + name in grid else None
    t = grid["t"].values
    for k, (ax, sel) in enumerate(zip(axes.ravel(), shown, strict=False)):
        for i, v in enumerate(grid[first].values):
            color = cmap(i / max(1, grid.sizes[first] - 1))
            curve = grid[name].sel({**sel, first: v})
            if "seed" in curve.dims:
                curve = curve.mean("seed")
            ax.plot(t, curve.values, color=color, label=f"{first} = {v}")
            if twin is not None:
                runs = grid[twin].sel({**sel, first: v})
                every = max(1, len(t) // 12)
                std = runs.std("seed").values if runs.sizes.get("seed", 1) > 1 else np.zeros(len(t))
                ax.errorbar(t[::every], runs.mean("seed").values[::every], yerr=std[::every], fmt="o", ms=2.5,
                            color=color, lw=0.8)
        ax.set_yscale("log")
        ax.set_title(", ".join(f"{d} = {v}" for d, v in sel.items()) or name.replace("_", " "), fontsize=8)
        if k % ncols == 0:
            ax.set_ylabel(name.replace(SIM_PREFIX, "twin ").replace("_", " ") + " (log scale)")
        if k >= len(shown) - ncols:
            ax.set_xlabel("step t")
    for ax in axes.ravel()[len(shown):]:
        ax.set_visible(False)
    theory = np.asarray(grid[name].values, dtype=float)
    theory = theory[np.isfinite(theory) & (theory > 0)]
    if theory.size:  # the y range of the curves (a diverging twin run would squash every panel)
        lo, hi = float(theory.min()), float(theory.max())
        axes[0, 0].set_ylim(lo / 1.5, hi * 3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if twin is not None:
        from matplotlib.lines import Line2D

        handles += [Line2D([], [], color="0.3"), Line2D([], [], color="0.3", marker="o", ls="none", ms=3)]
        labels += ["DMFT (lines)", "twin mean ± std"]
    fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.0 - 1.5 / fig.get_figwidth(), 0.98),
               fontsize=7)
    note = f" (first {max_panels} of {len(panels)} panels)" if len(panels) > len(shown) else ""
    fig.suptitle(f"{name.replace('_', ' ')}: colour = {first}" + note, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1.0 - 1.6 / fig.get_figwidth(), 1))
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
    with style():
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
