"""Figures of the extensive-output family (matplotlib imported lazily)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["figures", "density_figure", "width_figure"]


def density_figure(theory: Any = None, twin: Any = None) -> Any:
    """Singular-value density at each recorded step: theory lines against twin histograms."""
    import matplotlib.pyplot as plt

    src = theory if theory is not None else twin
    steps = src.t_spec.values
    fig, axes = plt.subplots(1, len(steps), figsize=(3 * len(steps), 2.6), sharey=False, squeeze=False)
    for ax, t in zip(axes[0], steps, strict=True):
        if twin is not None:
            ax.hist(twin.spectrum.sel(t_spec=t).values.ravel(), bins=40, density=True, alpha=0.4, label="twin")
        if theory is not None and "spectrum_density" in theory:
            ax.plot(theory.sv_grid.sel(t_spec=t), theory.spectrum_density.sel(t_spec=t), "k", label="theory")
            ax.axvline(float(theory.edge.sel(t_spec=t)), color="k", ls=":")
        ax.set_title(f"t = {int(t)}")
        ax.set_xlabel("singular value")
        ax.set_ylabel("density")
    axes[0][0].legend()
    fig.tight_layout()
    return fig


def width_figure(points: dict[str, dict[float, tuple[float, float]]], limits: dict[str, tuple[float, float]]) -> Any:
    """Edge and median against ν: ``points[param][ν] = (edge, median)`` (twin), ``limits[param]`` the ν = ∞
    theory (μP: mode recursion; NTK: lazy limit σ)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for param, pts in points.items():
        nus = np.array(sorted(pts))
        for i, ax in enumerate(axes):
            line = ax.plot(nus, [pts[n][i] for n in nus], "o-", label=f"twin {param}")[0]
            ax.axhline(limits[param][i], color=line.get_color(), ls="--", label=f"ν = ∞ {param}")
    for ax, name in zip(axes, ("edge", "median"), strict=True):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("ν = N/D")
        ax.set_ylabel(f"{name} of W⁰/√N")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def figures(theory: Any = None, twin: Any = None) -> dict[str, Any]:
    """Standard figures of one result: densities over time and losses."""
    import matplotlib.pyplot as plt

    out = {"density": density_figure(theory, twin)}
    fig, ax = plt.subplots(figsize=(4, 3))
    if theory is not None:
        ax.semilogy(theory.t, theory.test_loss, "k", label="theory test")
    if twin is not None:
        ax.semilogy(twin.t, twin.test_loss.mean("seed"), "o", ms=3, label="twin test")
    ax.set_xlabel("step t")
    ax.set_ylabel("per-channel test loss (log scale)")
    ax.legend()
    out["losses"] = fig
    return out
