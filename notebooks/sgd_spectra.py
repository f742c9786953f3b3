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
# # Singular-value spectra of SGD: the matrix SDE, its stationary laws, tail fits and the phase diagram
#
# `sgd_sde` models SGD on one weight matrix as the SDE dW = −(∇L + λW)dτ + √𝒟 dB, 𝒟 = ησ²/B
# (theory/sgd_sde.md), and checks it against real minibatch SGD on the same instances.
# Sizes here are small enough to run in about a minute on a laptop CPU; raise `ENSEMBLE`, `STEPS` and the
# grids
# for publication figures.

# %%
import jax
import matplotlib.pyplot as plt
import numpy as np

import dmft
import dmft.api as api
from dmft.families import sgd_sde
from dmft.families.sgd_sde import figures as sgd_figures
from dmft.plot import use_style
from dmft.spectra import fits

jax.config.update("jax_enable_x64", True)  # the array-level solvers below are float64
use_style()  # the library's colour-blind-safe figure style

ENSEMBLE = 16
STEPS = 501

# %% [markdown]
# ## 1. Spectra over time: pure gradient noise with weight decay
# From W(0) with Marchenko–Pastur singular values the spectrum relaxes to the Laguerre law with entry variance
# v = 𝒟/(λ(2 − ηλ)). The 1-D reduction (no level repulsion) would instead give λ ~ Gamma((M − N + 1)/2, λ/𝒟).

# %%
noise = dmft.load_config(
    None,
    {
        "model.family": "sgd_sde",
        "model.drift": "noise",
        "model.rows": 64,
        "model.cols": 32,
        "optim.lr": 0.02,
        "optim.batch_size": 1,
        "optim.grad_noise": 1.0,
        "optim.weight_decay": 1.0,
        "optim.steps": STEPS,
        "solver.ensemble": ENSEMBLE,
        "simulate.seeds": ENSEMBLE,
        "solver.record_every": 25,
    },
)
sde, sgd = api.compare(noise)
var = float(sde["stationary_sum_sq"]) / (64 * 32)

fig, axes = plt.subplots(1, 4, figsize=(14, 3.2), sharey=True)
for ax, t in zip(axes, [0, 2, 5, -1], strict=True):
    for ds, label in [(sde, "SDE"), (sgd, "SGD")]:
        ax.hist(ds["sv"].isel(t=t).values.ravel(), bins=30, density=True, histtype="step", label=label)
    s = np.linspace(1e-3, 2.6, 400)
    ax.plot(s, sgd_sde.mp_sv_pdf(s, 64, 32, 1 / 32), "k:", lw=1, label="MP at init")
    ax.plot(s, sgd_sde.mp_sv_pdf(s, 64, 32, var), "k", lw=1, label="stationary Laguerre/MP")
    ax.set_title(f"τ = {float(sde['tau'].isel(t=t)):.2f}")
    ax.set_xlabel("s")
axes[0].legend(fontsize=7)
fig.tight_layout()

# %% [markdown]
# The mean of Σλ follows its exact expectation for both the SDE and SGD:

# %%
law, sde_mean, sgd_mean = (float(x) for x in (sde["stationary_sum_sq"], sde["sum_sq"].isel(t=-1).mean(),
                                                sgd["sum_sq"].isel(t=-1).mean()))
print(f"stationary E Σλ: law {law:.3f}, SDE {sde_mean:.3f}, SGD {sgd_mean:.3f}")
k_hat = fits.gamma_fit(sde["sv"].isel(t=-1).values ** 2)
print(
    f"gamma MLE of λ: k = {k_hat.shape:.2f} ± {k_hat.shape_err:.2f}; 1-D reduction "
    f"{float(sde['gamma_1d_shape']):.2f}; provisional 2507.12709 law {float(sde['gamma_type_shape']):.2f}"
)

# %% [markdown]
# ## 2. Level repulsion
# Spacings of the stationary spectrum, unfolded with the Marchenko–Pastur CDF, follow the Wigner surmise.

# %%
lam = sde["sv"].isel(t=-1).values ** 2
spacing = fits.spacing_fit(lam, cdf=lambda x: sgd_sde.mp_eigen_cdf(x, 64, 32, var))
s_unf = fits.unfolded_spacings(lam, cdf=lambda x: sgd_sde.mp_eigen_cdf(x, 64, 32, var))
grid = np.linspace(0, 3.5, 200)
fig, ax = plt.subplots(figsize=(4.5, 3.2))
ax.hist(s_unf, bins=30, density=True, histtype="step", label="SDE, unfolded")
ax.plot(grid, fits.wigner_surmise_pdf(grid), "k", label="Wigner surmise")
ax.plot(grid, np.exp(-grid), "k:", label="Poisson")
ax.legend(fontsize=8)
print(spacing)

# %% [markdown]
# ## 3. Tail exponents against the learning rate (the 2509.01349 network)
# At larger temperature Θ = η/B the trained weights diffuse and the top of the spectrum of WWᵀ spreads out.
# We fit a power-law tail to the pooled λ of the final weights (KS-chosen lower cut-off, outlier-rejection
# upper
# cut-off, bootstrap p-value; p < 0.1 rejects the power law) and the gamma MLE.

# %%
phase = {
    "model.family": "sgd_sde",
    "model.drift": "phase_teacher",
    "model.rows": 16,
    "model.cols": 32,
    "data.samples": 128,
    "optim.batch_size": 4,
    "optim.steps": STEPS,
    "solver.ensemble": ENSEMBLE,
    "simulate.seeds": ENSEMBLE,
    "solver.record_every": 50,
}
rows = []
for lr in [0.05, 0.2, 0.8, 3.2]:
    run = api.simulate(dmft.load_config(None, {**phase, "optim.lr": lr}))
    lam = run["sv"].isel(t=-1).values.ravel() ** 2
    tail = fits.tail_fit(lam, n_boot=20, min_tail=30)
    gam = fits.gamma_fit(lam)
    rows.append((lr / 4, tail.alpha, tail.alpha_err, tail.p_value, gam.shape))
    print(
        f"Θ = {lr / 4:.4f}: α = {tail.alpha:.2f} ± {tail.alpha_err:.2f} (n_tail {tail.n_tail}, p = "
        f"{tail.p_value:.2f}), gamma k = {gam.shape:.2f}"
    )
rows = np.array(rows)
fig, ax = plt.subplots(figsize=(4.5, 3.2))
ax.errorbar(rows[:, 0], rows[:, 1], rows[:, 2], fmt="o")
ax.set_xscale("log")
ax.set_xlabel("Θ = η/B")
ax.set_ylabel("tail exponent α of p(λ)")

# %% [markdown]
# ## 4. Phase map
# Each grid point classifies its runs: ordered (criterion K_t ≥ ΘV_t/Δ̄ holds, unsaturated spins), jammed
# (criterion holds but σ_z² > ½), paramagnetic (criterion fails). Squares: SGD; contours: the SDE's P_ord.

# %%
sweep = dmft.load_config(
    None,
    {
        **phase,
        "solver.ensemble": 4,
        "simulate.seeds": 4,
        "sweep.sigma": [0.5, 2.0, 8.0],
        "sweep.lr": [0.125, 2.0],
    },
)
sde_grid = api.sweep(sweep, progress=False)
sgd_grid = api.sweep(sweep, kind="simulate", progress=False)
fig = sgd_figures.phase_map_figure(sde_grid, sgd_grid)
print(sgd_grid["phase_fraction"].to_dataframe().unstack("phase_name")["phase_fraction"])
