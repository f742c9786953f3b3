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
# # Extensive outputs: the bulk of the weight spectrum restructures
#
# A depth-1 linear network with C = κD outputs (loss summed over channels), trained by full-batch GD
# (shared/theory/extensive_outputs.md). With few outputs the trained first layer W⁰ is its initial bulk plus C
# outliers; with C ∝ D every step is an update of extensive rank and the bulk itself moves.
# * **Frozen readout**: the whole singular-value density at every step from a Dyson (variance-profile) equation,
#   exact at finite ν = N/D.
# * **Full GD**: exact at ν = ∞ under μP (mode-by-mode recursion); NTK tends to the lazy limit; at finite ν there
#   is no exact theory, and `extrapolate` fits the twin at several D to D = ∞.
#
# Sizes here are small (D = 80, 21 steps) so that the notebook runs in about a minute on a 2-core CPU; the
# shipped configs (`extensive_output`, `extensive_output_frozen`, `sweeps/extensive_output_width`) are larger.
# All spectra are of W⁰/√N (`units = "width"`), comparable across ν and finite at ν = ∞.

# %%
import time

import jax
import matplotlib.pyplot as plt

import dmft
import dmft.api as api
from dmft.families.extensive_output import figures as eof
from dmft.plot import merge_compare, use_style
from dmft.shipped import find_config  # shipped configs by name: runs from any folder

jax.config.update("jax_enable_x64", True)
use_style()  # the library's colour-blind-safe figure style

SMALL = {"optim.steps": 21, "simulate.dim": 80, "simulate.seeds": 2, "simulate.spectrum_every": 10,
         "extensive_output.units": "width", "extensive_output.grid": 150, "extensive_output.quad_rows": 400}
frozen_cfg = dmft.load_config(find_config("extensive_output_frozen"), overrides=SMALL)
full_cfg = dmft.load_config(find_config("extensive_output"), overrides=SMALL)

# %% [markdown]
# ## 1. Frozen readout: exact Dyson theory against the twin
# Lines: the Dyson density and its edge (Silverstein critical point); histograms: the twin (N-free Gram form, D = 80,
# both seeds pooled). The twin's top singular value sits a little below the edge: the D^{-2/3} finite-size bias.

# %%
t0 = time.time()
frozen_th, frozen_tw = api.compare(frozen_cfg)
e_th = float(frozen_th.edge.isel(t_spec=-1))
e_tw = float(frozen_tw.edge.isel(t_spec=-1).mean())
m_th = float(frozen_th.quantiles.isel(t_spec=-1).sel(q=0.5))
m_tw = float(frozen_tw.quantiles.isel(t_spec=-1).sel(q=0.5).mean())
print(f"frozen readout, t = {int(frozen_th.t_spec[-1])} ({time.time() - t0:.1f} s)")
print(f"frozen edge: theory {e_th:.4f}, twin {e_tw:.4f}, gap {100 * (e_tw / e_th - 1):+.2f}%")
print(f"frozen median: theory {m_th:.4f}, twin {m_tw:.4f}, gap {100 * (m_tw / m_th - 1):+.2f}%")
print(f"theory status: converged {bool(frozen_th.converged)}, diverged {bool(frozen_th.diverged)}")
figs = eof.figures(frozen_th, frozen_tw)
plt.close("all")
figs["density"]

# %% [markdown]
# ## 2. The phenomenon: C = 1 and 3 (outliers) against C = D (restructured bulk)
# Full GD at one width (ν = 2, D = 80). Sky blue: t = 0; orange: the last step; dashed: the initial bulk edge
# σ(1 + ν^{-1/2}); red markers: singular values above it. With C = 1 or 3, C values escape and the bulk stays;
# with C = D more than half of the spectrum moves above the initial edge.

# %%
t0 = time.time()
full_th, full_tw = api.compare(full_cfg)
runs = []
for c in (1, 3):
    tw = api.simulate(full_cfg.replace({"extensive_output.outputs": c}))
    runs.append((f"C = {c}", None, tw))
runs.append((f"C = D = {full_tw.attrs['dim']}", full_th, full_tw))
print(f"full GD twins at C = 1, 3, D ({time.time() - t0:.1f} s)")
for label, _, tw in runs:
    sv0, sv1 = tw.spectrum.isel(t_spec=0), tw.spectrum.isel(t_spec=-1)
    edge0 = 0.6 * (1 + 2**-0.5)
    above = float((sv1 > 1.02 * edge0).sum("i").mean())
    ratio = float(sv1.median("i").mean() / sv0.median("i").mean())
    print(f"{label}: {above:.1f} singular values above the initial edge, median x{ratio:.3f}")
eof.phenomenon_figure(runs)

# %% [markdown]
# ## 3. Frozen readout against full GD
# Frozen: the Dyson theory, exact at this ν. Full GD: the exact ν = ∞ μP limit (the twin is at ν = 2). The frozen
# model has to absorb the whole task into W⁰, so its spectrum keeps growing; with full GD the readout learns too.

# %%
e_inf = float(full_th.edge.isel(t_spec=-1))
e_full = float(full_tw.edge.isel(t_spec=-1).mean())
print(f"full GD edge: nu = inf theory {e_inf:.4f}, twin (nu = 2, D = 80) {e_full:.4f}")
eof.frozen_vs_full_figure({"frozen": (frozen_th, frozen_tw), "trained": (full_th, full_tw)})

# %% [markdown]
# ## 4. Width: μP converges, NTK drifts to the lazy limit
# The shipped sweep `sweeps/extensive_output_width` does this at D = 100 and 31 steps
# (`dmft sweep configs/sweeps/extensive_output_width.toml --kind both`); here two widths, one compile per width.

# %%
t0 = time.time()
sweep = dmft.load_config(find_config("sweeps/extensive_output_width"),
                         overrides={**SMALL, "sweep.width_ratio": [1, 4]})
grid = api.sweep(sweep, progress=False)
sim_grid = api.sweep(sweep, kind="simulate", progress=False)
both = merge_compare(grid, sim_grid)
both.attrs["sweep_axes"] = grid.attrs["sweep_axes"]
last = {"t_spec": int(sim_grid.t_spec[-1])}
top = sim_grid.edge.sel(last).mean("seed")
for p in ("mup", "ntk"):
    vals = ", ".join(f"nu = {nu:g}: {float(top.sel(width_ratio=nu, parameterization=p)):.3f}"
                     for nu in sim_grid.width_ratio.values)
    print(f"{p} twin edge {vals}; nu = inf theory {float(grid.edge.sel(last).sel(parameterization=p).max()):.3f}")
print(f"width sweep ({time.time() - t0:.1f} s)")
eof.width_figure(both)
