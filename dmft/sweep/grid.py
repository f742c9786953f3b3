"""The grid of a sweep: its points, their grouping into vmappable batches, and the assembly of one Dataset."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..config import Config, is_vmappable

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

__all__ = ["Point", "points_of", "group_points", "axis_name", "combine"]


@dataclass(frozen=True)
class Point:
    """One grid point: its position in the grid (row-major over the sweep axes), coordinates and config."""

    index: int
    coords: dict[str, Any]
    cfg: Config


def points_of(cfg: Config) -> list[Point]:
    """Every point of ``cfg``'s ``[sweep]`` grid, in grid order."""
    return [Point(i, coords, point) for i, (coords, point) in enumerate(cfg.grid())]


def group_points(cfg: Config, points: Sequence[Point]) -> list[list[Point]]:
    """Group grid points whose configs differ only in vmappable keys (one compiled program per group)."""
    fixed_axes = [k for k in cfg.sweep_axes if not is_vmappable(k)]
    groups: dict[tuple[Any, ...], list[Point]] = {}
    for p in points:
        groups.setdefault(tuple(p.coords[k] for k in fixed_axes), []).append(p)
    return list(groups.values())


def axis_name(dotted: str, axes: Sequence[str]) -> str:
    """The dimension name of a sweep axis: its short name, or the dotted name with ``_`` if short names clash."""
    short = dotted.split(".", 1)[1]
    clash = sum(a.split(".", 1)[1] == short for a in axes) > 1
    return dotted.replace(".", "_") if clash else short


def combine(cfg: Config, datasets: Sequence[xr.Dataset], coords: Sequence[dict[str, Any]]) -> xr.Dataset:
    """One Dataset with one dimension per sweep axis from the points' Datasets (in grid order)."""
    import xarray as xr

    from ..io import attach_config

    axes = list(cfg.sweep_axes)
    names = [axis_name(a, axes) for a in axes]
    shape = [len(v) for _, v in cfg.sweep]
    expanded = []
    for ds, c in zip(datasets, coords, strict=True):
        ds = ds.copy()
        ds.attrs = {}
        expanded.append(ds.expand_dims({n: [c[a]] for n, a in zip(names, axes, strict=True)}))

    def nest(items: list[xr.Dataset], dims: list[int]) -> Any:
        if len(dims) == 1:
            return items
        step = len(items) // dims[0]
        return [nest(items[i * step : (i + 1) * step], dims[1:]) for i in range(dims[0])]

    out = xr.combine_nested(
        nest(expanded, shape), concat_dim=names, join="outer", combine_attrs="drop", data_vars="all",
        coords="different", compat="no_conflicts",
    )
    out = attach_config(out, cfg)
    out.attrs["kind"] = datasets[0].attrs.get("kind", "")
    out.attrs["sweep_axes"] = ",".join(axes)
    return out
