"""Every family's standard figures, made from small results, are readable: every axes has x and y labels, every
colour drawn is explained by a legend (where there are several series), no glyph is missing from the fonts (tofu),
and the figure stays within 16 × 12 in. Sweeps facet every swept axis they do not put on the colour."""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
import pytest

import dmft
from dmft.families import REGISTRY
from dmft.plot import style
from dmft.shipped import find_config

MAX_SIZE = (16.0, 12.0)

#: One shipped config per family (several where the figures differ), run at the family's smoke size.
CASES = {
    "deep_linear": ("deep_linear_mup", {"simulate.spectrum_every": 3, "simulate.dim": 96, "simulate.seeds": 2}),
    "mean_field": ("mean_field", {"solver.max_outliers": 2, "simulate.spectrum_every": 2}),
    "diagonal_linear": ("diagonal_linear", {"simulate.snapshots": [0, 7], "solver.replicas": 2}),
    "sgd_sde_noise": ("sgd_sde_noise", {"solver.ensemble": 4, "simulate.seeds": 4}),
    "sgd_sde_phase": ("sgd_sde_phase", {"solver.ensemble": 4, "simulate.seeds": 4, "data.samples": 32}),
    "extensive_output": ("extensive_output_frozen", {}),
}


def _rgb(c: Any) -> tuple[float, ...] | None:
    from matplotlib.colors import to_rgba

    try:
        arr = np.asarray(c, dtype=float) if not isinstance(c, str) else None
    except (TypeError, ValueError):
        arr = None
    if arr is not None and arr.ndim == 2:
        if arr.shape[0] == 0:
            return None
        arr = arr[0]
    rgba = to_rgba(arr if arr is not None else c)
    if rgba[3] == 0:
        return None
    return tuple(round(x, 2) for x in rgba[:3])


def _drawn_colours(ax: Any) -> set[tuple[float, ...]]:
    """Colours of the data drawn on an axes (lines, markers, bands, histogram bars, scatter points)."""
    from matplotlib.collections import LineCollection, PathCollection, PolyCollection
    from matplotlib.patches import Polygon, Rectangle

    out = set()
    for line in ax.get_lines():
        if line.get_visible() and len(np.atleast_1d(line.get_xdata())) > 0:
            out.add(_rgb(line.get_color()))
    for col in ax.collections:
        if isinstance(col, PathCollection | PolyCollection | LineCollection) and col.get_visible():
            face = col.get_facecolor()
            out.add(_rgb(face) if len(face) else _rgb(col.get_edgecolor()))
    for patch in ax.patches:
        if isinstance(patch, Rectangle | Polygon) and patch.get_visible() and patch is not ax.patch:
            out.add(_rgb(patch.get_facecolor()) if patch.get_fill() else _rgb(patch.get_edgecolor()))
    return {c for c in out if c is not None}


def _legend_colours(fig: Any) -> set[tuple[float, ...]]:
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None] + list(fig.legends)
    out = set()
    for leg in legends:
        for h in leg.legend_handles:
            for getter in ("get_color", "get_facecolor", "get_edgecolor"):
                if hasattr(h, getter):
                    try:
                        c = _rgb(getattr(h, getter)())
                    except (TypeError, ValueError):
                        continue
                    if c is not None:
                        out.add(c)
    return out


def _has(ax: Any, which: str) -> bool:
    """An axes label, or one of an axes that shares this axis with it (faceted panels label the outer ones)."""
    get = ax.get_xlabel if which == "x" else ax.get_ylabel
    if get().strip():
        return True
    shared = ax.get_shared_x_axes() if which == "x" else ax.get_shared_y_axes()
    return any((s.get_xlabel() if which == "x" else s.get_ylabel()).strip() for s in shared.get_siblings(ax))


def check_figure(fig: Any, name: str) -> list[str]:
    """The problems of one figure (empty when it is fine), in the library's style (colours "C0".."C9" resolve to
    its palette)."""
    with style():
        return _check_figure(fig, name)


def _check_figure(fig: Any, name: str) -> list[str]:
    problems = []
    w, h = fig.get_size_inches()
    if w > MAX_SIZE[0] or h > MAX_SIZE[1]:
        problems.append(f"{name}: {w:.1f} × {h:.1f} in exceeds {MAX_SIZE}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig.savefig(io.BytesIO(), format="png", dpi=60)
    tofu = {str(x.message) for x in caught if "missing from" in str(x.message)}
    problems += [f"{name}: {m}" for m in sorted(tofu)]
    legend = _legend_colours(fig)
    for i, ax in enumerate(fig.axes):
        if not ax.get_visible() or ax.get_label() == "<colorbar>" or ax.images:
            if ax.images and not (ax.get_xlabel() and ax.get_ylabel()):
                problems.append(f"{name}, axes {i} ({ax.get_title()!r}): image without axis labels")
            continue
        where = f"{name}, axes {i} ({ax.get_title() or 'untitled'!r})"
        for which in ("x", "y"):
            if not _has(ax, which):
                problems.append(f"{where}: no {which} label")
        colours = _drawn_colours(ax)
        if len(colours) >= 2 and not colours <= legend:
            problems.append(f"{where}: {len(colours - legend)} of {len(colours)} series colours are in no legend")
    return problems


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    out = {}
    for case, (config, extra) in CASES.items():
        cfg = dmft.load_config(find_config(config))
        family = REGISTRY[cfg.model.family]
        out[case] = dmft.compare(cfg.replace({**family.smoke, **extra}))
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_standard_figures_are_readable(results: dict[str, Any], case: str) -> None:
    import matplotlib.pyplot as plt

    theory, sim = results[case]
    family = REGISTRY[theory.attrs["model.family"]]
    problems = []
    for args, label in (((theory, sim), "compare"), ((theory, None), "theory"), ((None, sim), "twin")):
        with style():
            figs = family.figures(*args)
        assert figs, f"{case} ({label}): no figure"
        for name, fig in figs.items():
            problems += check_figure(fig, f"{case} {label} {name}")
            plt.close(fig)
    assert not problems, "\n".join(problems)


def _grid_3_axes() -> Any:
    """A synthetic lr_transfer-like grid (width_ratio × lr × parameterization, theory and twin): the sweep
    figures are pure functions of the grid, so no solve is needed to check how they are laid out."""
    import xarray as xr

    rng = np.random.default_rng(0)
    nus, lrs, params, t = [0.5, 2.0, 8.0], [0.02, 0.08, 0.32], ["mup", "ntk"], np.arange(6)
    shape = (len(nus), len(lrs), len(params), len(t))
    loss = 0.5 * np.exp(-np.outer(np.linspace(0.5, 2, np.prod(shape[:3])), t / 5)).reshape(shape)
    loss[0, 2, 1, 3:] = np.nan  # a diverged run
    dims = ("width_ratio", "lr", "parameterization", "t")
    twin = loss[..., None] * (1 + 0.05 * rng.standard_normal((*shape, 3)))
    div = np.zeros(shape[:3], bool)
    div[0, 2, 1] = True
    return xr.Dataset(
        {"test_loss": (dims, loss), "sim_test_loss": ((*dims, "seed"), twin),
         "diverged": (dims[:3], div)},
        coords={"width_ratio": nus, "lr": lrs, "parameterization": params, "t": t},
        attrs={"sweep_axes": "model.width_ratio,optim.lr,model.parameterization"},
    )


def test_sweep_figures_facet_every_axis_and_stay_small() -> None:
    """A three-axis sweep (as lr_transfer) shows every value of every axis not on the colour, within 16 × 12 in
    (it showed only the first value of its third axis, in a 3822-px-wide row)."""
    import matplotlib.pyplot as plt

    from dmft.plot import lr_transfer_figure, sweep_loss_figure

    grid = _grid_3_axes()
    with style():
        figs = {"sweep_losses": sweep_loss_figure(grid), "lr_transfer": lr_transfer_figure(grid)}
    titles = [ax.get_title() for ax in figs["sweep_losses"].axes if ax.get_visible()]
    assert len(titles) == 3 * 2, titles  # lr × parameterization panels; width_ratio is the colour
    assert any("lr = 0.32" in t and "parameterization = ntk" in t for t in titles)
    problems = []
    for name, f in figs.items():
        problems += check_figure(f, name)
        plt.close(f)
    assert not problems, "\n".join(problems)
