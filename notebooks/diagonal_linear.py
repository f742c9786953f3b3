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
# # Diagonal linear networks: DMFT by Monte Carlo against trained networks
#
# β = u⊙v with u(0) = a, v(0) = 0, trained by full-batch gradient descent on Gaussian data with n = αd samples
# (shared/theory/diagonal_linear.md). The DMFT is exact as d → ∞ at fixed α; its coordinate site is sampled
# (S samples, scanned over time, exact tangents for the response), its sample site is in closed form.
# Sizes here run in about a minute on a 2-core CPU; the shipped configs (`configs/diagonal_linear.toml`,
# `configs/sweeps/diagonal_linear_init_scale.toml`) are the publication-size versions.

# %%
import time

import jax
import matplotlib.pyplot as plt

import dmft
import dmft.api as api
from dmft.families import diagonal_linear as dl
from dmft.families.diagonal_linear import figures as dlf
from dmft.plot import use_style
from dmft.shipped import find_config  # shipped configs by name: runs from any folder

jax.config.update("jax_enable_x64", True)  # the array-level solvers below are float64
use_style()  # the library's colour-blind-safe figure style

SMALL = {
    "optim.steps": 60,
    "solver.samples": 2000,
    "solver.replicas": 4,
    "simulate.dim": 500,
    "simulate.seeds": 2,
    "simulate.snapshots": [0, 10, 30, 59],
}
cfg = dmft.load_config(find_config("diagonal_linear"), overrides={**SMALL, "optim.lr": 0.12})

# %% [markdown]
# ## 1. Losses and histograms of β: theory against the twin
# Small init (a = 0.1), sparse teacher, α = 0.5. The band is ±2 Monte Carlo errors (from independent replica
# solves); the twin is the mean ± std over seeds. The dashed line is the lazy (a → ∞) prediction at the same
# η a², the dotted one the long-time fixed point of gradient flow (minimum Φ_a interpolator).

# %%
t0 = time.time()
theory, twin = api.compare(cfg)
print(
    f"DMFT + twin in {time.time() - t0:.1f} s; residual {float(theory.residual):.1e}, "
    f"converged {bool(theory.converged)}, diverged {bool(theory.diverged)}"
)
fin = twin.test_loss.isel(t=-1)
print(
    f"final test loss: DMFT {float(theory.test_loss[-1]):.4f} ± {float(theory.test_loss_mcse[-1]):.4f}, "
    f"twin {float(fin.mean()):.4f} ± {float(fin.std()):.4f}, "
    f"fixed point {float(theory.test_loss_fixed_point):.4f}"
)
figs = dlf.figures(theory, twin)
plt.close("all")  # shown one at a time below
figs["losses"]

# %%
figs["beta_hist"]

# %% [markdown]
# ## 2. Init scale from 0.01 to 3: incremental learning, implicit bias, speed against generalisation
# One compile for the whole sweep (init_scale is vmappable; the same Monte Carlo samples are reused).

# %%
sweep = dmft.load_config(
    find_config("diagonal_linear_init_scale"),
    overrides={
        **SMALL,
        "optim.steps": 100,
        "optim.lr": 0.03,
        "solver.samples": 1000,
        "simulate.snapshots": [0, 99],
        "sweep.init_scale": [0.01, 0.1, 1.0, 3.0],
    },
)
t0 = time.time()
grid = api.sweep(sweep, progress=False)
sim_grid = api.sweep(sweep, kind="simulate", progress=False)
print(f"sweep (theory and twins) in {time.time() - t0:.1f} s")
sfigs = dlf.sweep_figures(grid, sim_grid)
plt.close("all")
sfigs["losses_vs_init"]

# %% [markdown]
# Against τ/log(1/a) the small-init curves leave their first plateau together: a coordinate with frozen field
# g = β* + ρ(0)/α escapes at τ ≈ log(1/a)/|g| (dashed: the a → 0 search-phase limit, drawn until its plateau
# ends).

# %%
sfigs["plateaus"]

# %% [markdown]
# Final test loss against a, with the fixed point of gradient flow (ℓ2-like at large a, ℓ1-like at small a):
# large a converges to it within the run, small a is still learning (slower but headed to a sparser solution).

# %%
sfigs["final_error_vs_init"]

# %%
sfigs["late_rate_vs_init"]

# %% [markdown]
# ## 3. Oracles as library functions

# %%
p = dl.params_from_config(cfg)
for a in (1e-3, 0.1, 1.0, 10.0):
    fp = dl.fixed_point(p._replace(init_scale=a), "uv", "sparse")
    lam = dl.late_time_rate(fp, p._replace(init_scale=a), "uv")
    print(f"a = {a:6g}: fixed-point test loss {float(fp.test_loss):.4f}, late rate λ_min {float(lam):.4g}")
print(
    "escape time of a coordinate with g = 1 at a = 1e-3: τ =",
    float(dl.escape_time(1.0, p._replace(init_scale=1e-3), "uv")),
)

# %% [markdown]
# ## 4. Cost
# The causal solve is one pass over t; exact tangents make it O(S T³) (a sixth of it, with the
# block-triangular
# history). `benchmarks/diagonal_linear.py` measures it against a NumPy version of the same scheme (README).

# %%
for T in (20, 40):
    c = cfg.replace({"optim.steps": T, "solver.replicas": 0, "simulate.snapshots": [0]})
    api.solve(c)  # compile
    t0 = time.time()
    api.solve(c.replace({"solver.seed": 1}))
    print(f"T = {T}, S = {c.solver.samples}: {time.time() - t0:.2f} s")
