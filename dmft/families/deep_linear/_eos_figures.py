"""Edge-of-stability figures of the deep-linear family (matplotlib imported on first use)."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr


def sharpness_width_figure(grid: xr.Dataset, lr: float | None = None, lazy_value: float | None = None) -> Any:
    """sharpness(t) against t, one colour per width ratio, one panel per parameterization: theory lines (NaN
    after the crossing of 2/η), twin points (``sim_kernel_top``: mean ± sem over seeds), 2/η and the lazy value."""
    import matplotlib.pyplot as plt

    if lr is None or lazy_value is None:
        from ...io import config_of
        from .problem import lazy_kappa

        cfg = config_of(grid)
        lr = cfg.optim.lr if lr is None else lr
        m = cfg.model
        lazy = lazy_kappa(m.depth, m.sigma, m.sigma_readout) * (1 + cfg.data.alpha**-0.5) ** 2
        lazy_value = lazy if lazy_value is None else lazy_value

    panels = list(grid["parameterization"].values) if "parameterization" in grid.dims else [None]
    widths = grid["width_ratio"].values
    cmap = plt.get_cmap("viridis")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False, sharey=True)
    for ax, par in zip(axes[0], panels, strict=True):
        sel = {} if par is None else {"parameterization": par}
        for i, nu in enumerate(widths):
            color = cmap(i / max(1, len(widths) - 1))
            if "sharpness" in grid:
                th = grid["sharpness"].sel({**sel, "width_ratio": nu})
                ax.plot(grid["t"].values, th.values, "-", color=color, label=f"ν = {nu:g}")
            if "sim_kernel_top" in grid:
                tw = grid["sim_kernel_top"].sel({**sel, "width_ratio": nu})
                n = tw.sizes["seed"]
                t = grid["t"].values
                mean, sem = tw.mean("seed").values, tw.std("seed").values / np.sqrt(n)
                step = int(grid["eos_step"].sel({**sel, "width_ratio": nu})) if "eos_step" in grid else -1
                before = t <= step if step >= 0 else np.ones(t.size, dtype=bool)
                ax.errorbar(t[before], mean[before], yerr=sem[before], fmt="o", ms=2.5, color=color, alpha=0.8)
                if not before.all():  # past the theory's crossing of 2/η: shown, not described by the theory
                    ax.errorbar(t[~before], mean[~before], yerr=sem[~before], fmt="o", ms=3, mfc="none",
                                color=color, alpha=0.6)
        ax.axhline(2 / lr, color="C3", ls="--", label="2/η")
        if lazy_value is not None:
            ax.axhline(lazy_value, color="0.4", ls=":", label="ν → ∞ lazy value")
        ax.set_yscale("log")
        ax.set_xlabel("step t")
        ax.set_ylabel("sharpness λ_max(K̃) (log scale)")
        ax.set_title("" if par is None else {"mup": "μP", "ntk": "NTK"}.get(str(par), str(par)), fontsize=9)
    _log_ticks(axes[0][0])
    # one legend, in the first panel: widths, references and marker styles
    handles, labels = axes[0][0].get_legend_handles_labels()
    if "sim_kernel_top" in grid:
        from matplotlib.lines import Line2D

        handles += [Line2D([], [], color="0.3"), Line2D([], [], color="0.3", marker="o", ls="none", ms=3)]
        labels += ["theory (stops where it crosses 2/η)", "twin λ_max (Lanczos), mean ± s.e."]
        if "eos_step" in grid and bool(np.any(grid["eos_step"].values >= 0)):
            handles.append(Line2D([], [], color="0.3", marker="o", mfc="none", ls="none", ms=3))
            labels.append("twin past the theory's crossing")
    axes[0][0].legend(handles, labels, fontsize=6, loc="lower right")
    fig.tight_layout()
    return fig


def _scalar(v: Any) -> Any:
    """A coordinate value as a plain Python scalar (NumPy scalars, and the plain str of object coordinates)."""
    return v.item() if isinstance(v, np.generic) else v


def _log_ticks(ax: Any) -> None:
    """Plain-number ticks (1, 2, 3, 5, 10, 20, …) on a log axis (shared y: set once)."""
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

    lo, hi = ax.get_ylim()
    ticks = [m * 10.0**e for e in range(-2, 4) for m in (1, 2, 3, 5) if lo <= m * 10.0**e <= hi]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())


def eos_learning_rates(grid: xr.Dataset, rtol: float = 0.01) -> xr.DataArray | None:
    """The theory's edge-of-stability learning rate η_EoS (the η at which max_t η·sharpness(t; η) reaches 2) for
    every width ratio and parameterization of a learning-rate sweep, as a (lower, upper) bracket on dim ``bound``.

    The grid must hold the theory's ``eos_crossed`` (a sweep with ``solver.sharpness = true``); otherwise ``None``.
    The grid gives the bracket (the largest η that did not cross 2/η and the next one, which crossed or diverged);
    Illinois root bracketing in log η through the solver (:func:`.kernel.eos_lr`) narrows it to ``rtol``. NaN where the grid's η
    do not bracket the crossing (every η below it, or every η past it)."""
    if "eos_crossed" not in grid or "lr" not in grid.dims:
        return None
    from ..._jax import float64
    from ...io import config_of
    from .kernel import eos_lr
    from .theory import params_from_config

    base = config_of(grid)
    lrs = grid["lr"].values
    crossed = grid["eos_crossed"].astype(bool)
    if "diverged" in grid:
        crossed = crossed | grid["diverged"].astype(bool)
    others = [d for d in crossed.dims if d != "lr"]
    crossed = crossed.transpose(*others, "lr")
    out = np.full(crossed.shape[:-1] + (2,), np.nan)
    axis_key = {"width_ratio": "model.width_ratio", "parameterization": "model.parameterization"}
    for idx in np.ndindex(*crossed.shape[:-1]):
        flags = crossed.values[idx]
        first = np.flatnonzero(flags)
        if first.size == 0 or first[0] == 0:
            continue
        i = int(first[0])
        over = {axis_key.get(d, d): _scalar(crossed[d].values[j]) for d, j in zip(others, idx, strict=True)}
        cfg = base.replace(over)
        with float64():
            try:
                out[idx] = eos_lr(params_from_config(cfg), cfg.model.depth, cfg.optim.steps, float(lrs[i - 1]),
                                  float(lrs[i]), rtol=rtol, k_max=min(cfg.solver.max_outliers, 2))
            except ValueError:  # the grid point and the solver disagree on a side: leave NaN
                continue
    coords = {d: crossed[d].values for d in others}
    da = xr.DataArray(out, dims=(*others, "bound"), coords={**coords, "bound": ["lower", "upper"]}, name="eos_lr")
    da.attrs["long_name"] = "learning rate at which the theory's max_t η·sharpness(t) reaches 2 (bracket)"
    return da


def annotate_eos_lr(fig: Any, grid: xr.Dataset, eos: xr.DataArray) -> Any:
    """Mark η_EoS (the geometric mean of its bracket) on a learning-rate-transfer figure: one dashed vertical line
    per width ratio in that width's colour, in the panel of its parameterization (panels are matched by title).
    The panels' legends become one legend below the panels (the lines would hide them)."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    widths = grid["width_ratio"].values
    cmap = plt.get_cmap("viridis")
    drawn = False
    for ax in fig.axes:
        par = ax.get_title()
        if "parameterization" in eos.dims and par not in eos["parameterization"].values:
            continue
        sel = {"parameterization": par} if "parameterization" in eos.dims else {}
        for i, nu in enumerate(widths):
            lo, hi = eos.sel({**sel, "width_ratio": nu}).values
            if not np.isfinite(lo):
                continue
            ax.axvline(float(np.sqrt(lo * hi)), color=cmap(i / max(1, len(widths) - 1)), ls="--", lw=1.0,
                       alpha=0.9)
            drawn = True
    if not drawn:
        return fig
    legend = fig.axes[0].get_legend()
    handles = list(legend.legend_handles) if legend is not None else []
    labels = [t.get_text() for t in legend.get_texts()] if legend is not None else []
    for ax in fig.axes:
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    handles.append(Line2D([], [], color="0.3", ls="--", lw=1.0))
    labels.append("η at which the theory's max_t sharpness reaches 2/η")
    fig.legend(handles, labels, loc="lower center", ncol=min(5, len(labels)), fontsize=7, frameon=False)
    rows = -(-len(labels) // min(5, len(labels)))
    fig.tight_layout(rect=(0, 0.06 * rows, 1, 1))
    return fig
