"""Figures of the ``sgd_sde`` family (matplotlib is imported inside each function).

* :func:`figures` (theory and/or twin of one config): spectra at the first and last record with the
  Marchenko–Pastur law of W(0) and the stationary laws that apply, singular-value trajectories, |W|² or the
  loss with its exact expectation, and for ``phase_teacher`` the phase fractions and the T_c estimates.
* :func:`sweep_figures` (a sweep grid): the phase map for ``phase_teacher``, the spread of the singular values
  against Θ = η/B otherwise.
* :func:`phase_map_figure`: SGD phases with the SDE's forecast boundary (P_ord contours) and the jammed lines
  on top.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from . import _phase, _stationary

__all__ = ["figures", "sweep_figures", "phase_map_figure"]

# Okabe–Ito (colour-blind safe; dmft.plot.PALETTE): blue, vermillion, bluish green
_COLORS = {"ordered": "#0072B2", "paramagnetic": "#D55E00", "jammed": "#009E73"}


def _ens_dim(ds: xr.Dataset) -> str:
    return "member" if "member" in ds.dims else "seed"


def _sources(
    theory: xr.Dataset | None, sim: xr.Dataset | None
) -> list[tuple[str, xr.Dataset, dict[str, Any]]]:
    out = []
    if theory is not None:
        out.append(("SDE", theory, {"color": "#0072B2", "ls": "-"}))  # dmft.plot.PALETTE: theory blue
    if sim is not None:
        out.append(("SGD", sim, {"color": "#E69F00", "ls": "--"}))  # twin orange
    return out


def _config_numbers(ds: xr.Dataset) -> dict[str, float]:
    get = ds.attrs.get
    return {
        "rows": int(get("model.rows", ds.sizes["i"])),
        "cols": int(get("model.cols", ds.sizes["i"])),
        "sigma": float(get("model.sigma", 1.0)),
    }


def _spectra(srcs: list[tuple[str, xr.Dataset, dict[str, Any]]]) -> Any:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    ref = srcs[0][1]
    num = _config_numbers(ref)
    for ax, which in zip(axes, (0, -1), strict=True):
        top = 0.0
        for label, ds, sty in srcs:
            sv = ds["sv"].isel(t=which).values.ravel()
            sv = sv[np.isfinite(sv)]
            ax.hist(sv, bins=40, density=True, histtype="step", color=sty["color"], ls=sty["ls"], label=label)
            top = max(top, sv.max(initial=0.0))
        grid = np.linspace(1e-6, 1.15 * top, 400)
        if which == 0:
            var0 = num["sigma"] ** 2 / num["cols"]
            ax.plot(
                grid,
                _stationary.mp_sv_pdf(grid, num["rows"], num["cols"], var0),
                "k",
                lw=1,
                label="MP at init",
            )
        elif "teacher_sv" in ref:
            ts = ref["teacher_sv"].values.ravel()
            ax.hist(ts, bins=40, density=True, histtype="step", color="k", lw=1, label="teacher W*")
        elif "stationary_edge" in ref:
            var = float(ref["stationary_sum_sq"]) / (num["rows"] * num["cols"])
            ax.plot(
                grid,
                _stationary.mp_sv_pdf(grid, num["rows"], num["cols"], var),
                "k",
                lw=1,
                label="Laguerre/MP",
            )
            if "gamma_1d_shape" in ref:
                pdf = _stationary.gamma_sv_pdf(
                    grid, float(ref["gamma_1d_shape"]), float(ref["gamma_1d_rate"])
                )
                ax.plot(grid, pdf, "k:", lw=1, label="1-D gamma (no repulsion)")
        ax.set_xlabel("singular value s")
        ax.set_ylabel("density (pooled over runs)")
        ax.set_title(f"τ = {float(ref['tau'].isel(t=which)):.3g}")
        ax.legend(fontsize=8)
    return fig


def _trajectories(srcs: list[tuple[str, xr.Dataset, dict[str, Any]]]) -> Any:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    for label, ds, sty in srcs:
        dim = _ens_dim(ds)
        mean = ds["sv"].mean(dim)
        tau = ds["tau"].values
        for k, i in enumerate(ds["i"].values):
            ax.plot(
                tau, mean.sel(i=i), color=sty["color"], ls=sty["ls"], lw=1, label=label if k == 0 else None
            )
        lo, hi = ds["sv"].isel(i=0).quantile([0.16, 0.84], dim=dim).values
        ax.fill_between(tau, lo, hi, color=sty["color"], alpha=0.15)
    ax.set_xlabel("τ = η t")
    ax.set_ylabel("singular values (ensemble mean; band: top one, 16–84 %)")
    ax.legend()
    return fig


def _moments(srcs: list[tuple[str, xr.Dataset, dict[str, Any]]]) -> Any:
    """|W|² (noise) or the excess test loss ½|W − W*|² = test loss − m σ_ε²/2 (teacher), or the losses."""
    import matplotlib.pyplot as plt

    ref = srcs[0][1]
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    drift = ref.attrs.get("drift", "")
    if drift == "teacher":
        floor = 0.5 * float(ref.attrs.get("model.rows", 0)) * float(ref.attrs.get("data.noise", 0.0)) ** 2
        for label, ds, sty in srcs:
            ax.semilogy(
                ds["tau"],
                ds["test_loss"].mean(_ens_dim(ds)) - floor,
                color=sty["color"],
                ls=sty["ls"],
                label=f"{label} (mean)",
            )
        if "expected_test_loss" in ref:
            ax.semilogy(ref["tau"], ref["expected_test_loss"] - floor, "k:", label="exact expectation")
        ax.set_ylabel("excess test loss ½|W − W*|²")
    elif drift == "phase_teacher":
        for label, ds, sty in srcs:
            for name, mark in (("train_loss", "-"), ("test_loss", ":")):
                med = ds[name].median(_ens_dim(ds))
                ax.semilogy(ds["tau"], med, color=sty["color"], ls=mark, label=f"{label} {name} (median)")
        ax.set_ylabel("loss")
    else:
        for label, ds, sty in srcs:
            ax.plot(
                ds["tau"],
                ds["sum_sq"].mean(_ens_dim(ds)),
                color=sty["color"],
                ls=sty["ls"],
                label=f"{label} (mean)",
            )
        if "expected_sum_sq" in ref:
            ax.plot(ref["tau"], ref["expected_sum_sq"], "k:", label="exact expectation")
        if "stationary_sum_sq" in ref:
            ax.axhline(
                float(ref["stationary_sum_sq"]), color="gray", lw=0.8,
                label=r"stationary $mn\mathcal{D}/(\lambda(2 - h\lambda))$"
            )
        ax.set_ylabel("Σ λ_i = |W|²")
    ax.set_xlabel("τ = η t")
    ax.legend(fontsize=8)
    return fig


def _phase_panel(srcs: list[tuple[str, xr.Dataset, dict[str, Any]]]) -> Any:
    import matplotlib.pyplot as plt

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    width = 0.8 / len(srcs)
    for j, (label, ds, sty) in enumerate(srcs):
        x = np.arange(len(_phase.PHASES)) + j * width
        ax0.bar(x, ds["phase_fraction"].values, width=width, color=sty["color"], label=label)
        tc = ds["tc_estimate"].values
        tc = tc[np.isfinite(tc) & (tc > 0)]
        if tc.size:
            ax1.hist(np.log2(tc), bins=20, histtype="step", color=sty["color"], ls=sty["ls"], label=label)
    ax0.set_xticks(np.arange(len(_phase.PHASES)) + 0.4 - width / 2, _phase.PHASES)
    ax0.set_ylabel("fraction of runs")
    ax0.set_xlabel("phase")
    ax0.legend()
    theta = float(srcs[0][1]["theta"])
    ax1.axvline(np.log2(theta), color="k", ls=":", label="Θ = η/B")
    ax1.set_xlabel(r"$\log_2 T_c$ estimate $= \log_2(K_t \bar\Delta / V_t)$")
    ax1.set_ylabel("runs")
    ax1.legend()
    return fig


def figures(theory: xr.Dataset | None, sim: xr.Dataset | None) -> dict[str, Any]:
    """Standard figures of one config (either dataset may be ``None``)."""
    srcs = _sources(theory, sim)
    if not srcs:
        return {}
    figs = {"spectra": _spectra(srcs), "sv_trajectories": _trajectories(srcs), "moments": _moments(srcs)}
    if "phase_fraction" in srcs[0][1]:
        figs["phases"] = _phase_panel(srcs)
    return figs


def _points(grid: xr.Dataset) -> dict[str, np.ndarray]:
    """Flatten the sweep axes: per grid point 1/σ_W, Θ and the per-run variables."""
    dim = _ens_dim(grid)
    axes = [d for d in grid["sv"].dims if d not in (dim, "t", "i")]
    flat = grid.stack(point=axes) if axes else grid.expand_dims(point=[0])
    cfg = grid.attrs

    def axis_or_attr(name: str, attr: str) -> np.ndarray:
        if name in flat.coords:
            return np.asarray(flat[name].values, float)
        return np.full(flat.sizes["point"], float(cfg.get(attr, np.nan)))

    sigma = axis_or_attr("sigma", "model.sigma")
    lr = axis_or_attr("lr", "optim.lr")
    batch = axis_or_attr("batch_size", "optim.batch_size")
    out = {"inv_sigma": 1 / sigma, "theta": lr / batch, "flat": flat, "dim": dim}
    return out


def _phase_axes(ax: Any, pts: dict[str, Any], fill: bool, label: str) -> None:
    """Majority-phase squares (``fill``) and the P_ord contours of one grid."""
    flat = pts["flat"]
    x, y = pts["inv_sigma"], np.log2(pts["theta"])
    if fill:
        frac = flat["phase_fraction"].transpose("point", "phase_name").values
        major = np.argmax(frac, axis=1)
        for k, name in enumerate(_phase.PHASES):
            sel = major == k
            ax.scatter(
                x[sel], y[sel], s=140, marker="s", color=_COLORS[name], alpha=0.8, label=f"{label}: {name}"
            )
    p_ord = np.asarray(flat["p_ordered"].values, float)
    if len(np.unique(x)) >= 2 and len(np.unique(y)) >= 2 and len(x) >= 4:
        try:
            color = "k" if label == "SDE" else "#E69F00"
            cs = ax.tricontour(
                x, y, p_ord, levels=[0.5, 0.68, 0.95], colors=color, linestyles=["-", "--", ":"]
            )
            ax.clabel(cs, fmt=lambda v: f"{label} P_ord={v:g}", fontsize=7)
        except (ValueError, RuntimeError):  # degenerate triangulation (collinear points)
            pass


def _kind_label(ds: xr.Dataset) -> str:
    return "SGD" if ds.attrs.get("kind") == "simulation" or "seed" in ds.dims else "SDE"


def _jammed_lines(ax: Any) -> None:
    lines = _phase.jammed_boundary()
    ax.axvline(lines["soft_spin"], color="purple", lw=1.5, label="σ_z² = ½ (soft-spin bimodality)")
    ax.axvline(lines["naive"], color="purple", lw=1, ls=":", label="1/σ_W = √2 (σ_z = σ_W)")


def phase_map_figure(sde_grid: xr.Dataset | None, sgd_grid: xr.Dataset | None) -> Any:
    """Phase map in the (1/σ_W, log₂ Θ) plane: SGD majority phases (squares; the SDE's where SGD is absent),
    with the SDE's P_ord contours (its forecast of T_c) and the jammed/ordered lines on top."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5), constrained_layout=True)
    base = sgd_grid if sgd_grid is not None else sde_grid
    _phase_axes(ax, _points(base), fill=True, label=_kind_label(base))
    if sde_grid is not None and sgd_grid is not None:
        _phase_axes(ax, _points(sde_grid), fill=False, label="SDE")
        ax.set_title("squares: SGD majority phase; contours: SDE forecast of P_ord", fontsize=9)
    _jammed_lines(ax)
    pts = _points(base)
    ax.plot(
        pts["inv_sigma"],
        np.log2(0.1 / pts["inv_sigma"]),
        color="gray",
        lw=0.8,
        ls="-.",
        label="Θ/σ_W = 0.1 (mask)",
    )
    ax.set_xscale("log", base=2)
    y = np.log2(pts["theta"])
    ax.set_ylim(y.min() - 0.5, y.max() + 0.5)
    ax.set_xlim(
        pts["inv_sigma"].min() / 1.4, max(pts["inv_sigma"].max(), _phase.jammed_boundary()["naive"]) * 1.4
    )
    ax.set_xlabel("1/σ_W")
    ax.set_ylabel("log₂ Θ = log₂(η/B)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def _spread_figure(grid: xr.Dataset) -> Any:
    """Spread of the final singular values against Θ: RMS of s_i − s*_i (teacher) or mean max s − min s
    (noise)."""
    import matplotlib.pyplot as plt

    pts = _points(grid)
    flat, dim = pts["flat"], pts["dim"]
    sv = flat["sv"].isel(t=-1)
    if "teacher_sv" in flat:
        spread = np.sqrt(((sv - flat["teacher_sv"]) ** 2).mean((dim, "i"))).values
        what = "RMS of s_i − s*_i (final)"
    else:
        spread = (sv.max("i") - sv.min("i")).mean(dim).values
        what = "max s − min s (final, mean over runs)"
    th = pts["theta"]
    order = np.argsort(th)
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    batch = flat["batch_size"].values if "batch_size" in flat.coords else np.full(th.shape, np.nan)
    for b in np.unique(batch):
        sel = batch == b if np.isfinite(b) else np.ones(th.shape, bool)
        ax.loglog(th[sel], spread[sel], "o", label=what + (f", B = {int(b)}" if np.isfinite(b) else ""))
    ax.loglog(th[order], spread[order][0] * np.sqrt(th[order] / th[order][0]), "k:", label="∝ √(η/B)")
    ax.set_xlabel("Θ = η/B")
    ax.set_ylabel("spread")
    ax.legend(fontsize=8)
    return fig


def sweep_figures(grid: xr.Dataset) -> dict[str, Any]:
    """Phase map (``phase_teacher``) or singular-value spread against Θ (other drifts)."""
    if "phase_fraction" in grid:
        if _kind_label(grid) == "SGD":
            return {"phase_map": phase_map_figure(None, grid)}
        return {"phase_map": phase_map_figure(grid, None)}
    return {"spread_vs_theta": _spread_figure(grid)}
