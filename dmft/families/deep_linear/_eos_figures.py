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
                ax.plot(grid["t"].values, th.values, "-", color=color, label=f"ν = {nu}")
            if "sim_kernel_top" in grid:
                tw = grid["sim_kernel_top"].sel({**sel, "width_ratio": nu})
                n = tw.sizes["seed"]
                ax.errorbar(grid["t"].values, tw.mean("seed").values, yerr=tw.std("seed").values / np.sqrt(n),
                            fmt="o", ms=2.5, color=color, alpha=0.8)
        ax.axhline(2 / lr, color="C3", ls="--", label="2/η")
        if lazy_value is not None:
            ax.axhline(lazy_value, color="0.4", ls=":", label="ν → ∞ lazy value")
        ax.set_yscale("log")
        ax.set_xlabel("step t")
        ax.set_ylabel("sharpness λ_max(K̃)")
        ax.set_title("" if par is None else str(par), fontsize=9)
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig
