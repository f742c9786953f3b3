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

from .config import Config, ConfigError, load_config

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dmft", description="DMFT of neural-network training, with finite-width twins")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("config", help="TOML config file")
        sp.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set model.width_ratio=4 (repeatable)")
        sp.add_argument("--out", default=None, help="output directory (default: results/<config>/<command>)")
        sp.add_argument("--no-figures", action="store_true", help="write result.nc only")

    common(sub.add_parser("run", help="theory (DMFT) prediction"))
    common(sub.add_parser("simulate", help="finite-width twin"))
    common(sub.add_parser("compare", help="theory and twin in one figure"))
    sw = sub.add_parser("sweep", help="grid over the config's [sweep] table (resumable)")
    common(sw)
    sw.add_argument("--executor", default="local", help="local (points batched with vmap where shapes allow)")
    sw.add_argument("--kind", default="solve", choices=("solve", "simulate", "both"),
                    help="theory, twin, or both (one file, twin variables prefixed sim_) at every point")
    pl = sub.add_parser("plot", help="figures of a saved result")
    pl.add_argument("result", help="a result.nc written by dmft")
    pl.add_argument("--out", default=None, help="output directory (default: next to the result)")
    an = sub.add_parser("analyse", help="spectral fits of a weight matrix saved as .npy (tail, spacings, MP)")
    an.add_argument("matrix", help="a 2-D array saved with numpy.save (e.g. a trained layer's weights)")
    an.add_argument("--out", default=None, help="write the report as JSON to this file")
    an.add_argument("--no-normalize", action="store_true", help="analyse raw singular values")
    ci = sub.add_parser("cite", help="papers behind a config's model family")
    ci.add_argument("config", help="TOML config file or a family name")
    return p


def _out_dir(args: argparse.Namespace, cfg_path: str) -> Path:
    if args.out is not None:
        return Path(args.out)
    return Path("results") / Path(cfg_path).stem / args.command


def _save_figures(figs: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    paths = []
    for name, fig in figs.items():
        path = out / f"{name}.png"
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


def _load(args: argparse.Namespace) -> Config:
    return load_config(args.config, overrides=args.overrides)


def _run(args: argparse.Namespace) -> int:
    from . import api
    from .io import save_dataset
    from .plot import figures_for, merge_compare

    cfg = _load(args)
    out = _out_dir(args, args.config)
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
        label = f"theory vs twin ({cfg.model.family})"
    else:  # sweep
        if args.kind == "both":
            theory = api.sweep(cfg, out_dir=out, kind="solve", executor=args.executor, progress=True)
            sim = api.sweep(cfg, out_dir=out, kind="simulate", executor=args.executor, progress=True)
            ds = merge_compare(theory, sim)
            ds.attrs["sweep_axes"] = theory.attrs["sweep_axes"]
        else:
            ds = api.sweep(cfg, out_dir=out, kind=args.kind, executor=args.executor, progress=True)
        label = f"sweep over {', '.join(cfg.sweep_axes)} ({args.kind})"
    elapsed = time.perf_counter() - t0
    path = save_dataset(ds, out / "result.nc")
    figs = [] if args.no_figures else _save_figures(figures_for(ds), out)
    print(f"{_summary(ds, label)}  [{elapsed:.1f} s]")
    print(f"wrote {path}" + "".join(f"\nwrote {p}" for p in figs))
    return 0


def _plot(args: argparse.Namespace) -> int:
    from .io import load_dataset
    from .plot import figures_for

    ds = load_dataset(args.result)
    out = Path(args.out) if args.out else Path(args.result).parent
    out.mkdir(parents=True, exist_ok=True)
    for p in _save_figures(figures_for(ds), out):
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
    family: Any = load_config(target) if target.endswith(".toml") else target
    print(citation(family))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "plot":
            return _plot(args)
        if args.command == "cite":
            return _cite(args)
        if args.command == "analyse":
            return _analyse(args)
        return _run(args)
    except ConfigError as e:
        print(f"dmft {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dmft {args.command}: interrupted; finished sweep points are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
