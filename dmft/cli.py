"""The ``dmft`` command: run / simulate / compare / sweep / plot / cite.

Each command writes ``DIR/result.nc`` and PNG figures, prints a short summary and exits non-zero with a one-line
reason on bad input. An earlier ``result.nc`` in DIR is kept (renamed with a timestamp), never overwritten.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from .config import Config, ConfigError, family_names, load_config

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="dmft", description="DMFT of neural-network training, with finite-width twins")
    p.add_argument("--version", action="version", version=f"dmft-spectra {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser, config_optional: bool = False) -> None:
        sp.add_argument("config", nargs="?" if config_optional else None,
                        help="TOML config file, or the name of a shipped config (see `dmft configs`)")
        sp.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set model.width_ratio=4 (repeatable)")
        sp.add_argument("--out", default=None, help="output directory (default: results/<config>/<command>)")
        sp.add_argument("--no-figures", action="store_true", help="write result.nc only")
        sp.add_argument("--no-cache", action="store_true",
                        help="no persistent compilation cache (also DMFT_NO_CACHE=1; its folder: DMFT_CACHE_DIR)")

    common(sub.add_parser("run", help="theory (DMFT) prediction"))
    common(sub.add_parser("simulate", help="finite-width twin"))
    common(sub.add_parser("compare", help="theory and twin in one figure"))
    sw = sub.add_parser("sweep", help="grid over the config's [sweep] table (resumable)")
    common(sw, config_optional=True)
    sw.add_argument("--executor", default="local", choices=("local", "ray"),
                    help="local: vmapped batches over every local device; ray: one task per batch on a Ray cluster")
    sw.add_argument("--kind", default=None, choices=("solve", "simulate", "both"),
                    help="theory (default), twin, or both (one file, twin variables prefixed sim_) at every point")
    sw.add_argument("--shard", default=None, metavar="I/N",
                    help="compute only every N-th point (grid index = I mod N, I = 0..N-1) into --out; for job arrays")
    sw.add_argument("--merge", default=None, metavar="DIR",
                    help="assemble the points saved in DIR (by shards or an interrupted sweep) into DIR/result.nc")
    sw.add_argument("--batch-size", type=int, default=None, metavar="B",
                    help="points per vmapped call per device (default: fitted to device memory; ray: spread)")
    sw.add_argument("--devices", type=int, default=None, metavar="K",
                    help="use the first K local devices (default all)")
    sw.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray instance)")
    sw.add_argument("--workers", type=int, default=None, metavar="K",
                    help="CPUs of a local Ray instance (default all)")
    pl = sub.add_parser("plot", help="figures of a saved result")
    pl.add_argument("result", help="a result.nc written by dmft")
    pl.add_argument("--out", default=None, help="output directory (default: next to the result)")
    an = sub.add_parser("analyse", help="spectral fits of a weight matrix saved as .npy (tail, spacings, MP)")
    an.add_argument("matrix", help="a 2-D array saved with numpy.save (e.g. a trained layer's weights)")
    an.add_argument("--out", default=None, help="write the report as JSON to this file")
    an.add_argument("--no-normalize", action="store_true", help="analyse raw singular values")
    ky = sub.add_parser("keys", help="config keys of a model family: type, default, allowed values, meaning")
    ky.add_argument("family", nargs="?", default=None, help="a model family (default: every family)")
    cf = sub.add_parser("configs", help="list the shipped configs (run them by name: dmft run NAME)")
    cf.add_argument("--copy", nargs=2, metavar=("NAME", "DEST"), default=None,
                    help="copy a shipped config to DEST (a folder or a file) to edit it")
    ci = sub.add_parser("cite", help="papers behind a config's model family")
    ci.add_argument("config", help="TOML config file or a family name")
    ga = sub.add_parser("gallery", help="remake every figure of the claims gallery, with measured captions")
    ga.add_argument("--quick", action="store_true", help="small sizes (a few minutes; what CI runs)")
    ga.add_argument("--out", default=None,
                    help="output folder (default: docs/gallery in a source checkout, else results/gallery)")
    ga.add_argument("--only", nargs="+", default=None, metavar="ID", help="only these claims (or jobs)")
    ga.add_argument("--list", action="store_true", help="list the claims, their papers, configs and status")
    return p


def _keys(args: argparse.Namespace) -> int:
    from .config import describe_keys

    rows = describe_keys(args.family)
    width = max(len(r["key"]) for r in rows)
    for r in rows:
        default = "(none)" if r["default"] is None else repr(r["default"])
        fams = "" if args.family else f"  [{', '.join(r['families'])}]"
        sweep = ", sweep: one compile" if r["vmappable"] else ""
        print(f"{r['key']:<{width}}  {r['meaning']}{fams}")
        print(f"{'':<{width}}    {r['type']}, default {default}, {r['allowed']}{sweep}")
    return 0


def _configs(args: argparse.Namespace) -> int:
    from .shipped import copy_config, describe, list_configs

    if args.copy is not None:
        print(f"wrote {copy_config(*args.copy)}")
        return 0
    shipped = list_configs()
    width = max(len(n) for n in shipped)
    for name, path in shipped.items():
        print(f"{name:<{width}}  {describe(path)}")
    return 0


def _out_dir(args: argparse.Namespace, cfg_path: str) -> Path:
    if args.out is not None:
        return Path(args.out)
    return Path("results") / Path(cfg_path).stem / args.command


def _save_figures(figs: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    from .plot import style

    paths = []
    for name, fig in figs.items():
        path = out / f"{name}.png"
        with style():  # colours given as "C0".."C9" resolve when drawn: draw with the library's palette
            fig.savefig(path, dpi=130)
        plt.close(fig)
        paths.append(path)
    return paths


def _summary(ds: Any, label: str) -> str:
    import numpy as np

    parts = [label]
    for name in ("train_loss", "test_loss"):
        if name in ds and "t" in ds[name].dims:
            last = np.asarray(ds[name].isel(t=-1).values, dtype=float)
            val = float(np.mean(last[np.isfinite(last)])) if np.isfinite(last).any() else float("nan")
            parts.append(f"final {name} {val:.4g}")
    if "diverged" in ds and bool(np.any(ds["diverged"].values)):
        parts.append("DIVERGED (see divergence_step)")
    if "residual" in ds and ds["residual"].ndim == 0:
        parts.append(f"residual {float(ds['residual']):.1e}")
    if "converged" in ds and not bool(np.all(ds["converged"].values)):
        parts.append("NOT CONVERGED")
    return ", ".join(parts)


def loss_gaps(theory: Any, sim: Any) -> dict[str, dict[str, float]]:
    """The theory–twin gap of every loss both hold, relative to the twin's seed mean m(t).

    ``{name: {"rms": √mean_t((theory − m)/m)², "final": (theory − m)/m at the last common step,
    "se": the twin's standard error over seeds at that step, relative to m}}``, over the steps both recorded and
    where both are finite (seeds that diverged are left out of m).
    """
    import numpy as np

    out: dict[str, dict[str, float]] = {}
    for name in ("train_loss", "test_loss"):
        if name not in theory or name not in sim or "t" not in theory[name].dims or "seed" not in sim[name].dims:
            continue
        common = np.intersect1d(theory["t"].values, sim["t"].values)
        if common.size == 0:
            continue
        th = np.asarray(theory[name].sel(t=common).values, dtype=float)
        runs = np.asarray(sim[name].sel(t=common).transpose("seed", "t").values, dtype=float)
        finite = np.isfinite(runs)
        n = finite.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            m = np.where(n > 0, np.nansum(np.where(finite, runs, 0.0), axis=0) / np.maximum(n, 1), np.nan)
            var = np.nansum(np.where(finite, (runs - m) ** 2, 0.0), axis=0) / np.maximum(n - 1, 1)
            se = np.where(n > 1, np.sqrt(var / np.maximum(n, 1)), np.nan)
            rel = (th - m) / m
        ok = np.isfinite(rel)
        if not ok.any():
            continue
        last = np.flatnonzero(ok)[-1]
        out[name] = {
            "rms": float(np.sqrt(np.mean(rel[ok] ** 2))),
            "final": float(rel[last]),
            "se": float(se[last] / abs(m[last])),
            "t_final": int(common[last]),
        }
    return out


def _gap_text(gaps: dict[str, dict[str, float]], sep: str = "; ") -> str:
    return sep.join(
        f"{name} gap {100 * g['rms']:.2g} % RMS over t, {100 * g['final']:+.2g} % at t = {g['t_final']} "
        f"(twin s.e. {100 * g['se']:.2g} %)"
        for name, g in gaps.items()
    )


def _annotate_gaps(figs: dict[str, Any], gaps: dict[str, dict[str, float]]) -> None:
    """Append each loss's gap to the title of the panel that shows it (or to the figure's title)."""
    for fig_name, fig in figs.items():
        if "loss" not in fig_name:
            continue
        placed = set()
        for ax in fig.axes:
            title = ax.get_title()
            for name, g in gaps.items():
                if title.startswith(name.replace("_", " ")) and name not in placed:
                    ax.set_title(f"{title}\ngap to twin: {100 * g['rms']:.2g} % RMS, {100 * g['final']:+.2g} % final "
                                 f"(s.e. {100 * g['se']:.2g} %)", fontsize=8)
                    placed.add(name)
        rest = {k: v for k, v in gaps.items() if k not in placed}
        if rest:
            sup = fig._suptitle.get_text() + "\n" if getattr(fig, "_suptitle", None) is not None else ""
            fig.suptitle(sup + _gap_text(rest, sep="\n"), fontsize=8)


def _sweep_summary(ds: Any, label: str, max_lines: int = 24) -> str:
    """Per-point status of a swept result: a count line, then one line per point (every point when there are at
    most ``max_lines``, otherwise the points that diverged or did not converge), by their coordinates."""
    import itertools

    import numpy as np
    import xarray as xr

    from .api import _axis_name
    from .results import status_text

    axes = [a for a in str(ds.attrs.get("sweep_axes", "")).split(",") if a]
    dims = [_axis_name(a, axes) for a in axes]
    dims = [d for d in dims if d in ds.dims]
    sim_vars = [v for v in ds.data_vars if v.startswith("sim_")]
    theory_vars = [v for v in ds.data_vars if not v.startswith("sim_")]
    sources = []
    if any(v in ds for v in ("diverged", "converged", "train_loss", "test_loss")):
        sources.append(("", ds[theory_vars]))
    if sim_vars:
        sources.append(("twin: ", ds[sim_vars].rename({v: v[4:] for v in sim_vars})))

    def final(part: Any, name: str) -> float:
        if name not in part or "t" not in part[name].dims:
            return float("nan")
        v = np.asarray(part[name].isel(t=-1).values, dtype=float)
        return float(np.mean(v[np.isfinite(v)])) if np.isfinite(v).any() else float("nan")

    lines, flagged, n_bad = [], [], {"diverged": 0, "not converged": 0}
    for idx in itertools.product(*(range(ds.sizes[d]) for d in dims)):
        sel = dict(zip(dims, idx, strict=True))
        where = ", ".join(f"{d}={ds[d].values[i]}" for d, i in sel.items())
        words = []
        for prefix, part in sources:
            sub = part.isel(sel)
            status = status_text(xr.Dataset({k: sub[k] for k in ("diverged", "divergence_step", "converged")
                                             if k in sub}))
            losses = ", ".join(f"{n} {final(sub, n):.4g}" for n in ("train_loss", "test_loss") if n in sub)
            words.append(f"{prefix}{status}" + (f" (final {losses})" if losses else ""))
        line = f"  {where}: " + "; ".join(words)
        lines.append(line)
        n_bad["diverged"] += any("diverged" in w for w in words)
        n_bad["not converged"] += any("not converged" in w for w in words)
        if any("diverged" in w or "not converged" in w for w in words):
            flagged.append(line)
    n = len(lines)
    counts = ", ".join(f"{k} {v}" for k, v in n_bad.items() if v) or "all converged"
    head = f"{label}: {n} points; {counts}"
    if n <= max_lines:
        return "\n".join([head, *lines])
    shown = flagged[:max_lines]
    more = [f"  … and {len(flagged) - len(shown)} more flagged points"] if len(flagged) > len(shown) else []
    return "\n".join([head + (" (flagged points:)" if flagged else ""), *shown, *more])


#: Free space an output folder must have before any computation starts (a result plus its figures).
MIN_FREE_BYTES = 50 * 2**20


def _free_bytes(path: Path) -> int:
    """Free bytes on the file system holding ``path`` (a module function so that tests can stand in for it)."""
    import shutil

    return int(shutil.disk_usage(path).free)


def _check_out(out: Path) -> None:
    """Make sure ``out`` is (or can become) a writable folder with room for a result, before anything is computed.

    Creates the folder, writes and removes a probe file (the only test that also holds for root and for read-only
    mounts), and checks the free space; any failure is a one-line :class:`ConfigError` naming ``--out``.
    """
    import os
    import tempfile

    where = f"--out {str(out)!r}"
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                raise ConfigError(f"{where}: {str(p)!r} is a file, not a folder")
            break
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".dmft-write-probe-", dir=out)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise ConfigError(f"{where}: not writable ({e.strerror or type(e).__name__})") from None
    free = _free_bytes(out)
    if free < MIN_FREE_BYTES:
        raise ConfigError(
            f"{where}: only {free / 2**20:.1f} MB free on its file system; at least {MIN_FREE_BYTES // 2**20} MB "
            "are needed"
        )


def _config_notice(args: argparse.Namespace, cfg: Config) -> str | None:
    """A one-line notice when the config file (with ``--set``) sets none of its family's own keys."""
    import tomllib

    from .families import get_family
    from .family import COMMON_KEYS

    try:
        data = tomllib.loads(Path(args.config).read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    set_keys = {f"{s}.{k}" for s, table in data.items() if s != "sweep" and isinstance(table, dict) for k in table}
    set_keys |= set(cfg.sweep_axes) | {o.split("=", 1)[0].strip() for o in args.overrides}
    family = get_family(cfg.model.family)
    own = set(family.all_keys) - {"model.family", *COMMON_KEYS}
    if set_keys & own or not own:
        return None
    what = "is empty" if not data else f"sets none of the {family.name} keys"
    return (f"dmft {args.command}: note: config {args.config} {what}; running the {family.name} defaults "
            f"for every key (model.family = {family.name!r})")


def _load(args: argparse.Namespace) -> Config:
    from .shipped import find_config

    args.config = str(find_config(args.config))  # a path, or a shipped config by name
    cfg = load_config(args.config, overrides=args.overrides)
    notice = _config_notice(args, cfg)
    if notice:
        print(notice, file=sys.stderr)
    return cfg


def _run(args: argparse.Namespace) -> int:
    from . import api
    from .io import save_dataset
    from .plot import merge_compare

    if args.config is None:
        raise ConfigError("sweep: give a CONFIG (or --merge DIR to assemble a sweep folder)")
    cfg = _load(args)
    out = _out_dir(args, args.config)
    _check_out(out)
    args.checked_out = out
    t0 = time.perf_counter()
    if args.command == "run":
        ds = api.solve(cfg)
        label = f"theory ({cfg.model.family})"
    elif args.command == "simulate":
        ds = api.simulate(cfg, progress=True)
        label = f"twin ({cfg.model.family}, {cfg.simulate.seeds} seeds)"
    elif args.command == "compare":
        theory, sim = api.compare(cfg, progress=True)
        ds = merge_compare(theory, sim)
        gaps = loss_gaps(theory, sim)
        for name, g in gaps.items():
            for k, v in g.items():
                ds.attrs[f"gap_{name}_{k}"] = v
        label = f"theory vs twin ({cfg.model.family})" + (f"; {_gap_text(gaps)}" if gaps else "")
    else:  # sweep
        kind = args.kind or "solve"
        opts = {"executor": args.executor, "progress": True, "shard": args.shard, "batch_size": args.batch_size,
                "devices": args.devices, "address": args.address, "workers": args.workers}
        kinds = ("solve", "simulate") if kind == "both" else (kind,)
        grids = [api.sweep(cfg, out_dir=out, kind=k, **opts) for k in kinds]
        if args.shard is not None:
            return _shard_done(args, out, kinds)
        ds = grids[0]
        if kind == "both":
            ds = merge_compare(grids[0], grids[1])
            ds.attrs["sweep_axes"] = grids[0].attrs["sweep_axes"]
        label = f"sweep over {', '.join(cfg.sweep_axes)} ({kind})"
    elapsed = time.perf_counter() - t0
    path = save_dataset(ds, out / "result.nc")
    args.written = path
    figs = [] if args.no_figures else _save_figures(_figures(ds), out)
    if args.command == "sweep":
        print(f"{_sweep_summary(ds, label)}\n[{elapsed:.1f} s]")
    else:
        print(f"{_summary(ds, label)}  [{elapsed:.1f} s]")
    print(f"wrote {path}" + "".join(f"\nwrote {p}" for p in figs))
    return 0


def _shard_done(args: argparse.Namespace, out: Path, kinds: tuple[str, ...]) -> int:
    """A shard writes points only: say how far the whole folder is, and how to merge it."""
    from .sweep import complete_kinds

    left = complete_kinds(out)
    todo = ", ".join(f"{left[k]} {k} points" for k in kinds if left[k])
    status = f"{todo} of the grid still to compute" if todo else "every point of the grid is done"
    print(f"dmft sweep: shard {args.shard} finished; {status}; assemble with: dmft sweep --merge {out}")
    return 0


def _merge(args: argparse.Namespace) -> int:
    """``dmft sweep --merge DIR``: the grid saved in DIR as DIR/result.nc (+ figures)."""
    from .io import save_dataset
    from .plot import merge_compare
    from .sweep import complete_kinds, merge

    if args.config is not None:
        raise ConfigError("--merge DIR takes no CONFIG (the grid is read from DIR/sweep.toml)")
    out = Path(args.merge)
    if args.kind is None:
        left = complete_kinds(out)
        kinds = tuple(k for k in ("solve", "simulate") if left[k] == 0) or ("solve",)
    else:
        kinds = ("solve", "simulate") if args.kind == "both" else (args.kind,)
    t0 = time.perf_counter()
    grids = [merge(out, k) for k in kinds]
    ds = grids[0]
    if len(grids) == 2:
        ds = merge_compare(grids[0], grids[1])
        ds.attrs["sweep_axes"] = grids[0].attrs["sweep_axes"]
    _check_out(out)
    path = save_dataset(ds, out / "result.nc")
    args.written = path
    figs = [] if args.no_figures else _save_figures(_figures(ds), out)
    label = f"merged sweep over {ds.attrs['sweep_axes'].replace(',', ', ')} ({' + '.join(kinds)})"
    print(f"{_sweep_summary(ds, label)}\n[{time.perf_counter() - t0:.1f} s]")
    print(f"wrote {path}" + "".join(f"\nwrote {p}" for p in figs))
    return 0


def _figures(ds: Any) -> dict[str, Any]:
    """The standard figures of a result; a comparison's loss panels carry the theory–twin gap in their titles."""
    from .plot import figures_for

    figs = figures_for(ds)
    if ds.attrs.get("kind") == "compare" and not ds.attrs.get("sweep_axes"):
        gaps: dict[str, dict[str, float]] = {}
        for name in ("train_loss", "test_loss"):
            keys = ("rms", "final", "se", "t_final")
            if all(f"gap_{name}_{k}" in ds.attrs for k in keys):
                gaps[name] = {k: ds.attrs[f"gap_{name}_{k}"] for k in keys}
        _annotate_gaps(figs, gaps)
    return figs


def _plot(args: argparse.Namespace) -> int:
    from .io import load_dataset

    ds = load_dataset(args.result)
    out = Path(args.out) if args.out else Path(args.result).parent
    _check_out(out)
    for p in _save_figures(_figures(ds), out):
        print(f"wrote {p}")
    return 0


def _analyse(args: argparse.Namespace) -> int:
    import json

    from .spectra.fits import analyse_matrix

    path = Path(args.matrix)
    if not path.is_file():
        raise ConfigError(f"matrix file {str(path)!r}: not found")
    try:
        report = analyse_matrix(str(path), normalize=not args.no_normalize)
    except (ValueError, OSError) as e:
        msg = str(e).splitlines()[0]
        raise ConfigError(msg if str(path) in msg else f"matrix file {str(path)!r}: {msg}") from None
    text = json.dumps(report, indent=1)
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    else:
        print(text)
    return 0


def _cite(args: argparse.Namespace) -> int:
    from .api import citation

    target = args.config
    if target.endswith(".toml") or "/" in target or target not in family_names():
        from .shipped import find_config

        family: Any = load_config(find_config(target))
    else:
        family = target
    print(citation(family))
    return 0


def _gallery(args: argparse.Namespace) -> int:
    from . import gallery

    if args.list:
        for c in gallery.CLAIMS:
            where = gallery.command_of(gallery.JOBS[c.job]) if c.job else c.why
            print(f"{c.paper}  {c.id:<26} {c.status:<15} {where}")
        return 0
    records = gallery.run_gallery(args.out, quick=args.quick, only=args.only)
    failed = [r["id"] for r in records if "error" in r]
    out = args.out or gallery.default_out()
    print(f"dmft gallery: {len(records) - len(failed)} of {len(records)} figures written to {out}"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def _process_setup(compiles: bool = True, no_cache: bool = False) -> None:
    """What the command line sets for its own process (the library itself sets nothing on import).

    * One OpenBLAS thread unless the user chose otherwise: jaxlib's CPU LAPACK kernels run many small
      factorizations (level-2 root finding, twin spectra), and OpenBLAS threads competing with XLA's own pool made
      them up to ~100× slower on a 2-core machine (T = 200 level 2: 96 s → 12 s).
    * float64 for the whole run.
    * JAX's persistent compilation cache (commands that compute; :mod:`dmft.sweep.cache`), unless ``--no-cache``
      or ``DMFT_NO_CACHE=1``: a warm ``dmft run configs/deep_linear_mup.toml`` takes seconds instead of ~45 s.
      jaxlib 0.10.1 logs two spurious C++ errors for every executable it loads from the cache on CPUs with the
      LLVM tuning flags +prefer-no-gather/+prefer-no-scatter (jax-ml/jax#38445; the executable loads and runs
      fine), so XLA's C++ log is limited to fatal messages (``TF_CPP_MIN_LOG_LEVEL=3``) unless the user set it.
    """
    import os

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    use_cache = compiles and not no_cache and os.environ.get("DMFT_NO_CACHE", "").strip().lower() in ("", "0",
                                                                                                      "false", "no")
    if use_cache:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import jax

    jax.config.update("jax_enable_x64", True)
    if use_cache:
        from .sweep import cache

        cache.enable()


def _interrupt_note(args: argparse.Namespace) -> str:
    """What an interruption left behind: finished sweep points (only a sweep saves any) or nothing new."""
    out = getattr(args, "checked_out", None)
    if getattr(args, "written", None) is not None:
        return f"{args.written} was written; figures may be missing (dmft plot {args.written} draws them)"
    if args.command == "sweep" and out is not None:
        points = Path(out) / "points"
        n = len(list(points.glob("*.nc"))) if points.is_dir() else 0
        if n:
            return f"{n} finished sweep point{'s' * (n != 1)} kept in {points}; run the same command again to resume"
        return "no sweep point had finished; nothing was written"
    return "nothing was written" + (f" (an earlier result in {out} is unchanged)" if out is not None else "")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _process_setup(compiles=args.command in ("run", "simulate", "compare", "sweep", "gallery"),
                   no_cache=getattr(args, "no_cache", False))
    try:
        if args.command == "sweep" and args.merge is not None:
            return _merge(args)
        if args.command == "plot":
            return _plot(args)
        if args.command == "cite":
            return _cite(args)
        if args.command == "keys":
            return _keys(args)
        if args.command == "configs":
            return _configs(args)
        if args.command == "analyse":
            return _analyse(args)
        if args.command == "gallery":
            return _gallery(args)
        return _run(args)
    except ConfigError as e:
        print(f"dmft {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dmft {args.command}: interrupted; {_interrupt_note(args)}", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
