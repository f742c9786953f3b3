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
# # Infinite-width μP networks on a finite data set (mean-field DMFT)
#
# A depth-3 linear network trained by full-batch GD on P = 10 points. The kernel DMFT at N → ∞ is solved in
# closed form (marched in time); its finite-width twin is a real network of width N. Level 2 gives the outlier
# singular values of the hidden matrices W^ℓ/√N, which leave the bulk edge 2σ as the network learns features.
# Sizes are small so that this notebook runs in the test suite.

# %%
import jax
import numpy as np

import dmft
from dmft.families.mean_field import initial_kernels, input_gram, lazy_oracle, make_dataset
from dmft.families.mean_field.figures import figures
from dmft.plot import use_style
from dmft.shipped import find_config  # shipped configs by name: runs from any folder

jax.config.update("jax_enable_x64", True)  # the array-level solvers below are float64
use_style()  # the library's colour-blind-safe figure style
cfg = dmft.load_config(find_config("mean_field"), overrides={"simulate.width": 512, "simulate.seeds": 2})
theory, twin = dmft.compare(cfg)
twin_loss = float(twin.train_loss.isel(t=-1).mean())
print(f"final train loss: theory {float(theory.train_loss[-1]):.4f}, twin {twin_loss:.4f}")
print("leading outlier of W^1/√N (theory):",
      np.round(theory.outlier_sv.sel(layer=1, k=0, t=twin.t_spec).values, 3))
print("top singular value of W^1/√N (twin):", np.round(twin.top_sv.sel(layer=1, k=0).mean("seed").values, 3))
print("Gram consistency (ΦᵀZ = (GᵀY)ᵀ):", theory.gram_consistency.values)
figs = figures(theory, twin)
print(sorted(figs))

# %% [markdown]
# ## Feature learning against the lazy limit
# As γ0 → 0 at fixed η the kernels freeze and the dynamics is the static-NTK (lazy) one; larger γ0 learns
# features, grows the tangent kernel's alignment with the targets, and speeds up the late phase.

# %%
data = make_dataset(cfg)
k0 = initial_kernels(input_gram(data.x_all), activation="linear", depth=3, sigma=0.7, sigma_w=1.0).ntk
lazy = lazy_oracle(k0, data.y_train, lr=cfg.optim.lr, steps=cfg.optim.steps)
quiet = {"solver.outliers": False}
for g0 in (0.1, 1.0, 3.0):
    ds = dmft.solve(cfg.replace({**quiet, "model.gamma0": g0}))
    print(f"γ0 = {g0}: final train loss {float(ds.train_loss[-1]):.4f}, alignment {float(ds.ntk_alignment[-1]):.3f}")
print(f"lazy oracle: final train loss {float(lazy.train_loss[-1]):.4f}")

# %% [markdown]
# ## μP vs NTK
# Under NTK, γ0 = γ̃0/√N: the theory at the twin's width moves toward the lazy curve as N grows.

# %%
for n in (256, 4096, 65536):
    ds = dmft.solve(cfg.replace({**quiet, "model.parameterization": "ntk", "model.gamma0": 3.0 * np.sqrt(256),
                                 "simulate.width": n}))
    print(f"NTK, N = {n}: γ0 = {ds.attrs['gamma0_effective']:.3f}, final train loss {float(ds.train_loss[-1]):.4f}")

# %% [markdown]
# ## Outliers against γ0 and σ
# The leading outlier of W¹/√N at the last step: feature learning (γ0) pushes it out of the bulk; a larger σ
# widens the bulk (edge 2σ) and the spike has to be stronger to escape.

# %%
for sigma in (0.5, 0.7, 0.9):
    row = []
    for g0 in (1.0, 3.0):
        ds = dmft.solve(cfg.replace({"model.sigma": sigma, "model.gamma0": g0}))
        row.append(float(ds.outlier_sv.sel(layer=1, k=0).where(ds.outlier_evaluated, drop=True).isel(t=-1)))
    print(f"σ = {sigma} (edge {2 * sigma:.1f}): leading outlier at γ0 = 1, 3:", np.round(row, 3))

# %% [markdown]
# ## Nonlinear φ: Monte Carlo solver against networks of growing width
# A two-layer ReLU network (depth 1: no response functions are needed) solved by sampling the single-site
# process; the twin's outputs approach the theory as N grows.

# %%
relu = dmft.load_config(find_config("mean_field_relu"), overrides={
    "model.depth": 1, "optim.steps": 8, "solver.samples": 4000, "simulate.seeds": 4})
th = dmft.solve(relu)
for n in (128, 2048):
    sim = dmft.simulate(relu.replace({"simulate.width": n}))
    gap = float(np.sqrt(((sim.f.mean("seed") - th.f) ** 2).mean()))
    print(f"ReLU, N = {n}: RMS gap of the outputs to the Monte Carlo theory {gap:.4f}")
