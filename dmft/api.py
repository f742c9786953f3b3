"""The user's surface: ``solve``, ``simulate``, ``compare``, ``sweep`` for any model family."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import xarray as xr

from .config import Config, ConfigError, is_vmappable
from .families import get_family
from .family import Family
from .io import attach_config, config_to_toml, load_dataset, save_dataset
from .results import finalize

__all__ = ["solve", "simulate", "compare", "sweep", "citation", "point_key"]


def _plain(cfg: Config) -> Config:
    return dataclasses.replace(cfg, sweep=()) if cfg.sweep else cfg


def solve(cfg: Config) -> xr.Dataset:
    """The theory prediction for one config (its ``[sweep]`` table, if any, is ignored: see :func:`sweep`)."""
    from ._jax import float64

    cfg = _plain(cfg)
    family = get_family(cfg.model.family)
    with float64():
        ds = family.solve(cfg)
    ds.attrs["kind"] = "theory"
    return finalize(attach_config(ds, cfg), family.long_names)


def simulate(cfg: Config, progress: bool = False) -> xr.Dataset:
    """The finite-width twin for one config: the theory's variables plus a ``seed`` dimension."""
    from ._jax import float64

    cfg = _plain(cfg)
    family = get_family(cfg.model.family)
    with float64():
        ds = family.simulate(cfg, progress)
    ds.attrs["kind"] = "simulation"
    return finalize(attach_config(ds, cfg), family.long_names)


def compare(cfg: Config, progress: bool = False) -> tuple[xr.Dataset, xr.Dataset]:
    """Theory and twin for the same config."""
    return solve(cfg), simulate(cfg, progress=progress)


# --------------------------------------------------------------------------------------------------------------
# Sweeps
# --------------------------------------------------------------------------------------------------------------


def point_key(cfg: Config, kind: str) -> str:
    """A stable file name for one sweep point: a hash of its full config and of what was computed."""
    text = kind + "\n" + config_to_toml(_plain(cfg))
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _axis_name(dotted: str, axes: Sequence[str]) -> str:
    short = dotted.split(".", 1)[1]
    clash = sum(a.split(".", 1)[1] == short for a in axes) > 1
    return dotted.replace(".", "_") if clash else short


def _group_points(
    cfg: Config, points: list[tuple[dict[str, Any], Config]]
) -> list[list[tuple[dict[str, Any], Config]]]:
    """Group grid points whose configs differ only in vmappable keys (one compile per group)."""
    fixed_axes = [k for k in cfg.sweep_axes if not is_vmappable(k)]
    groups: dict[tuple[Any, ...], list[tuple[dict[str, Any], Config]]] = {}
    for coords, point in points:
        groups.setdefault(tuple(coords[k] for k in fixed_axes), []).append((coords, point))
    return list(groups.values())


def _run_group(family: Family, kind: str, configs: list[Config]) -> list[xr.Dataset]:
    batch = family.solve_batch if kind == "solve" else family.simulate_batch
    if batch is not None and len(configs) > 1:
        return list(batch(configs))
    if kind == "solve":
        return [family.solve(c) for c in configs]
    return [family.simulate(c, False) for c in configs]


EXECUTORS = ("local",)


def sweep(
    cfg: Config,
    out_dir: str | Path | None = None,
    kind: str = "solve",
    executor: str = "local",
    progress: bool = True,
    on_point: Callable[[dict[str, Any], xr.Dataset], None] | None = None,
) -> xr.Dataset:
    """Solve (``kind="solve"``) or simulate (``kind="simulate"``) every point of ``cfg``'s ``[sweep]`` grid.

    Points that differ only in vmappable keys (lr, gamma0, sigma, alpha, noise, parameterization, ...) are
    batched under one compile; the other axes are looped. With ``out_dir``, every finished point is saved at once
    to ``out_dir/points/<hash>.nc`` and a re-run skips it, so an interrupted sweep resumes where it stopped.
    Returns one Dataset with one dimension per sweep axis.
    """
    from ._jax import float64

    if kind not in ("solve", "simulate"):
        raise ConfigError(f"sweep kind = {kind!r}: must be 'solve' or 'simulate'")
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor = {executor!r}: must be one of {', '.join(EXECUTORS)}")
    if not cfg.sweep:
        raise ConfigError("sweep: the config has no [sweep] table; add lists, e.g. width_ratio = [1, 2, 4]")
    family = get_family(cfg.model.family)
    axes = list(cfg.sweep_axes)
    points = list(cfg.grid())
    point_dir = Path(out_dir) / "points" if out_dir is not None else None

    results: dict[int, xr.Dataset] = {}
    pending: list[tuple[dict[str, Any], Config]] = []
    for idx, (coords, point) in enumerate(points):
        if point_dir is not None:
            f = point_dir / f"{point_key(point, kind)}.nc"
            if f.exists():
                results[idx] = load_dataset(f)
                continue
        pending.append((coords, point))

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(points), initial=len(points) - len(pending), desc=f"sweep ({kind})", unit="pt")
    index_of = {id(p): i for i, (_, p) in enumerate(points)}
    try:
        for group in _group_points(cfg, pending):
            with float64():
                outs = _run_group(family, kind, [p for _, p in group])
            for (coords, point), ds in zip(group, outs, strict=True):
                ds.attrs["kind"] = "theory" if kind == "solve" else "simulation"
                ds = finalize(attach_config(ds, point), family.long_names)
                if point_dir is not None:
                    save_dataset(ds, point_dir / f"{point_key(point, kind)}.nc", keep_previous=False)
                results[index_of[id(point)]] = ds
                if on_point is not None:
                    on_point(coords, ds)
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()

    return _combine(cfg, axes, [results[i] for i in range(len(points))], [c for c, _ in points])


def _combine(cfg: Config, axes: list[str], datasets: list[xr.Dataset], coords: list[dict[str, Any]]) -> xr.Dataset:
    names = [_axis_name(a, axes) for a in axes]
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


# --------------------------------------------------------------------------------------------------------------
# Citation
# --------------------------------------------------------------------------------------------------------------

_PAPERS = {
    "2605.07870": "Lauditi, Pehlevan, Bordelon. Spectral dynamics in deep networks: two-level DMFT (arXiv:2605.07870)",
    "2502.02531": "Bordelon, Pehlevan. Deep linear network training dynamics from random initialization "
    "(arXiv:2502.02531)",
    "2205.09653": "Bordelon, Pehlevan. Self-consistent dynamical field theory of kernel evolution in wide neural "
    "networks (arXiv:2205.09653)",
    "2510.01930": "Nishiyama, Imaizumi. Precise dynamics of diagonal linear networks (arXiv:2510.01930)",
    "2507.12709": "Olsen et al. From SGD to spectra: Dyson Brownian motion of singular values (arXiv:2507.12709)",
    "2509.01349": "Park, Lucini, Aarts. Phase diagram and eigenvalue dynamics of SGD (arXiv:2509.01349)",
}
def citation(family: str | Config = "deep_linear") -> str:
    """The papers behind a model family (or a config's family), one per line."""
    if isinstance(family, Config):
        family = family.model.family
    return "\n".join(_PAPERS.get(k, f"arXiv:{k}") for k in get_family(family).papers)
