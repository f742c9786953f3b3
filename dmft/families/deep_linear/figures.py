"""Standard figures of the deep-linear family (matplotlib is imported on first use)."""

from __future__ import annotations

import numpy as np
import xarray as xr


def figures(theory: xr.Dataset | None = None, sim: xr.Dataset | None = None) -> dict:
    """Losses; with a twin: spectra (bulk law and theory outliers on the simulated histograms), outlier
    trajectories and the tangent-kernel sharpness against 2/η."""
    from ...plot import loss_figure, outlier_trajectory_figure, sharpness_figure, spectrum_figure

    figs = {"losses": loss_figure(theory, sim)}
    if sim is not None and "spectrum" in sim and sim.sizes.get("i", 0) > 0:
        bulk, outliers = None, None
        if theory is not None and "outlier_sv" in theory:
            from ...io import config_of
            from ...spectra.bulk import sv_density

            m = config_of(theory).model
            qs = {0: m.width_ratio, **{layer: 1.0 for layer in range(1, m.depth)}}
            bulk = {
                # the twin histograms hold the min(N, D) nonzero singular values: normalise to mass 1
                layer: (lambda s, q=q: np.asarray(sv_density(s, q, m.sigma)) * max(1.0, q))
                for layer, q in qs.items()
            }
            outliers = theory["outlier_sv"]
        figs["spectra"] = spectrum_figure(sim, bulk, outliers)
        figs["outliers"] = outlier_trajectory_figure(theory, sim)
    if sim is not None and "sharpness" in sim:
        from ...io import config_of
        from .problem import lazy_kappa

        cfg = config_of(sim)
        m = cfg.model
        alpha = cfg.optim.batch_ratio or cfg.data.alpha
        k0 = lazy_kappa(m.depth, m.sigma, m.sigma_readout) * (1 + alpha**-0.5) ** 2
        figs["sharpness"] = sharpness_figure(theory, sim, reference=k0)
    elif theory is not None and "outlier_sv" in theory:
        figs["outliers"] = outlier_trajectory_figure(theory, None)
    return figs


def sweep_figures(grid: xr.Dataset) -> dict:
    """Figures of a deep-linear sweep: losses; outlier trajectories against width (μP vs NTK); final test loss
    against the learning rate for every width (learning-rate transfer; with ``solver.sharpness``, each width's
    edge-of-stability learning rate from theory marked); sharpness against t for every width (edge of stability).
    Twin points (``sim_`` variables, from ``dmft sweep --kind both``) are drawn on top of the theory."""
    from ...plot import lr_transfer_figure, outliers_vs_width_figure, sweep_loss_figure

    figs = {"sweep_losses": sweep_loss_figure(grid, "test_loss" if "test_loss" in grid else "sim_test_loss")}
    dims = set(grid.dims)
    if "width_ratio" in dims and "outlier_sv" in grid:
        figs["outliers_vs_width"] = outliers_vs_width_figure(grid)
    if "lr" in dims and "width_ratio" in dims:
        figs["lr_transfer"] = lr_transfer_figure(grid)
        if "eos_crossed" in grid:  # the sweep recorded the theory's sharpness: mark η_EoS of every width
            from ._eos_figures import annotate_eos_lr, eos_learning_rates

            eos = eos_learning_rates(grid)
            if eos is not None:
                annotate_eos_lr(figs["lr_transfer"], grid, eos)
    kernel = "sharpness" if "sharpness" in grid else "sim_kernel_top" if "sim_kernel_top" in grid else None
    if (kernel is not None and "width_ratio" in dims
            and set(grid[kernel].dims) - {"t", "seed"} <= {"width_ratio", "parameterization"}):  # edge of stability
        from ._eos_figures import sharpness_width_figure

        figs["sharpness_width"] = sharpness_width_figure(grid)
    return figs
