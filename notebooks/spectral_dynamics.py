# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Spectral dynamics of deep linear networks (two-level DMFT)
#
# Level 1: the DMFT of a deep linear network in the proportional limit gives the losses and every correlation
# and response function. Level 2: from them, the outlier singular values of every weight matrix, which escape
# the random bulk as the network learns. Each prediction is drawn with its finite-width twin on top.
# Sizes are small so that this notebook runs in the test suite; raise `simulate.dim` and `simulate.seeds` for
# publication figures.

# %%
import jax
import numpy as np

import dmft
from dmft.plot import lr_transfer_figure, outliers_vs_width_figure, use_style
from dmft.shipped import find_config  # shipped configs by name: runs from any folder

jax.config.update("jax_enable_x64", True)  # float64 throughout (the array-level solvers need it)
use_style()  # the library's colour-blind-safe figure style
cfg = dmft.load_config(find_config("deep_linear_mup"), overrides={
    "optim.steps": 21, "simulate.dim": 100, "simulate.seeds": 2, "simulate.spectrum_every": 10})
theory = dmft.solve(cfg)
twin = dmft.simulate(cfg)
print(f"final test loss: theory {float(theory.test_loss[-1]):.4f}, twin {float(twin.test_loss.isel(t=-1).mean()):.4f}")
print("outliers at t = 20 (theory):", np.round(theory.outlier_sv.sel(t=20, k=0).values, 4))
print("top singular values at t = 20 (twin):",
      np.round(twin.spectrum.sel(t_spec=20).isel(i=0).mean("seed").values, 4))
print("escape steps:", theory.escape_step.sel(k=0).values, "bulk edges:", theory.bulk_edge.values)

# %% [markdown]
# ## Bulk and outliers
# The bulk of each matrix stays the Marchenko–Pastur / quarter-circle law of its initialisation (the spikes have
# finite rank); the outliers sit on spikes whose directions depend on the bulk, so naive BBP is wrong.

# %%
from dmft.families.deep_linear.figures import figures  # noqa: E402

figs = figures(theory, twin)
print(sorted(figs))  # drawn below: losses, spectra, outliers (outlier_trajectory_figure), sharpness

# %% [markdown]
# ## μP vs NTK: outliers against width
# Under μP the per-step spike strength ηγ0 is width independent and the trajectories settle; under NTK it
# shrinks as ν^{-1/2} and the outliers fall back toward the bulk edge.

# %%
sweep_cfg = dmft.load_config(find_config("outliers_width"), overrides={
    "optim.steps": 16, "sweep.width_ratio": [0.5, 2, 8]})
grid = dmft.sweep(sweep_cfg, progress=False)
late = grid.outlier_sv.sel(layer=1, k=0).isel(t=-1)
print(late.to_pandas())
fig = outliers_vs_width_figure(grid)

# %% [markdown]
# ## Learning-rate transfer
# Final test loss against η for several widths: the best η is width stable under μP and drifts under NTK.
# Learning rates past stability are flagged `diverged`.

# %%
lr_cfg = dmft.load_config(find_config("lr_transfer"), overrides={
    "sweep.width_ratio": [1, 4], "sweep.lr": [0.02, 0.08, 0.32], "optim.steps": 20})
lr_grid = dmft.sweep(lr_cfg, progress=False)
best = lr_grid.test_loss.isel(t=-1).fillna(np.inf).idxmin("lr")
print(best.to_pandas())
fig = lr_transfer_figure(lr_grid)
