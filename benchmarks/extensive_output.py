"""Benchmark of the extensive-output family (shared/theory/extensive_outputs.md §8).

    python benchmarks/extensive_output.py [--quick] [--repeats 5] [--out benchmarks/out/extensive_output.json]

1. Dyson solve (frozen readout) time per recorded step against the grid size: the density on the grid (one
   warm-started Newton solve per grid point), the edge and the quantiles, for the population case (λ ≡ 1,
   Silverstein edge) and finite α (2D variance profile, fold edge). Compile time apart.
2. Gram-form twin (N-free, population loss, full GD, config Σ: ν = 2, κ = 1) cost per GD step against D, and at
   ν = 32 (the same cost: independent of N); the weight form at the same sizes for comparison.
3. The twin at D = 2000 (C = 2000, N = 4000): weight form and Gram form, two GD steps, one timed run.

Every time is the median of ``--repeats`` runs after one compile run. Set OPENBLAS_NUM_THREADS=1 on a shared
machine (as the tests do); the numbers depend on the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", True)

from dmft.families.extensive_output import theory, twin  # noqa: E402
from dmft.families.extensive_output._laws import data_law, row_law  # noqa: E402
from dmft.families.extensive_output.problem import Hyper, Sizes  # noqa: E402

SIGMA = Hyper(0.05, 3.0, 2.0, 1.0, 0.6, 1.0, 1.0, 0.0, float("inf"))  # config Σ (population)
FINITE = Hyper(0.05, 3.0, 2.0, 1.0, 0.6, 1.0, 1.0, 0.3, 2.0)  # α = 2, σ_ε = 0.3


def _median_time(f, repeats: int) -> tuple[float, float]:  # noqa: ANN001
    """(compile + first run, median of ``repeats`` further runs), seconds."""
    t0 = time.perf_counter()
    jax.block_until_ready(f())
    first = time.perf_counter() - t0
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(f())
        ts.append(time.perf_counter() - t0)
    return first, statistics.median(ts)


def dyson(grids: list[int], repeats: int, quad_rows: int, quad_data: int, max_grid_2d: int = 200) -> list[dict]:
    """Population: every grid size; finite α (≈ 100× costlier per point): grids up to ``max_grid_2d``."""
    rows_out = []
    levels = jnp.asarray([0.1, 0.5, 0.9, 0.99])
    for name, h, population in (("population", SIGMA, True), ("alpha=2", FINITE, False)):
        rows = row_law(h.nu, h.kappa, h.sigma_w, quad_rows)
        data = data_law(h.alpha, quad_data)
        hv = jnp.asarray(h, dtype=jnp.float64)
        for n in [g for g in grids if population or g <= max_grid_2d]:
            step = jax.jit(lambda t, hv, n=n, population=population, rows=rows, data=data: theory.dyson_step(
                t, Hyper(*hv), rows, data, n, levels, population))
            first, med = _median_time(lambda step=step, hv=hv: step(jnp.asarray(20.0), hv), repeats)
            out = step(jnp.asarray(20.0), hv)
            rows_out.append({"case": name, "grid": n, "compile_s": first - med, "step_s": med,
                             "edge": float(out["edge"]), "converged": bool(out["converged"])})
            print(f"  dyson {name:10s} grid {n:5d}: {med * 1e3:9.1f} ms/step (compile {first - med:5.1f} s), "
                  f"edge {float(out['edge']):.4f}", flush=True)
    return rows_out


def twin_cost(dims: list[int], nus: list[float], forms: list[str], steps: int, repeats: int) -> list[dict]:
    out = []
    rec = (0, steps - 1)
    for form in forms:
        for nu in nus:
            for d in dims:
                h = SIGMA._replace(nu=nu)
                sizes = Sizes(d, round(nu * d), d, 0, steps, False)
                key = jax.random.key(0)
                first, med = _median_time(lambda key=key, h=h, sizes=sizes, form=form: twin.train(
                    key, h, sizes, rec, form, True), repeats)
                per = med / (steps - 1)
                out.append({"form": form, "nu": nu, "D": d, "N": sizes.width, "C": d, "steps": steps,
                            "run_s": med, "per_step_s": per, "compile_s": max(first - med, 0.0)})
                print(f"  twin {form:6s} nu = {nu:4g} D = {d:5d} (N = {sizes.width:6d}): {per * 1e3:10.2f} ms/step "
                      f"(run of {steps} states {med:7.2f} s, compile {max(first - med, 0.0):5.1f} s)", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes only (a smoke run)")
    ap.add_argument("--repeats", type=int, default=5, help="runs per timing (median), after the compile run")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "out" / "extensive_output.json"))
    args = ap.parse_args()
    q = args.quick
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {load[0]:.1f}, "
          f"jax {jax.__version__} ({jax.default_backend()}); medians of {args.repeats} runs")
    res = {"load_average": load, "cores": os.cpu_count(), "repeats": args.repeats}
    print("1. Dyson (frozen readout), one recorded step (t = 20), quad_rows 1000, quad_data 40:")
    res["dyson"] = dyson([50, 100] if q else [50, 100, 200, 400, 800], args.repeats, 1000, 40)
    print("2. Gram-form twin per GD step vs D (C = D, full GD, population), and ν = 32; weight form alongside:")
    dims = [50, 100] if q else [50, 100, 200, 400]
    res["twin"] = twin_cost(dims, [2.0, 32.0], ["gram", "weight"], 21, args.repeats)
    print("3. Twin at D = 2000 (C = 2000, ν = 2: N = 4000), 3 states (2 GD steps), after one compile run:")
    res["twin_2000"] = [] if q else twin_cost([2000], [2.0], ["weight", "gram"], 3, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1, default=float))
    print(f"wrote {args.out}")
    _table(res)


def _table(res: dict) -> None:
    print("\n| Dyson case | grid | ms per step | compile s |\n|---|---|---|---|")
    for r in res["dyson"]:
        print(f"| {r['case']} | {r['grid']} | {r['step_s'] * 1e3:.1f} | {r['compile_s']:.1f} |")
    print("\n| twin form | ν | D | N | ms per GD step | compile s |\n|---|---|---|---|---|---|")
    for r in res["twin"] + res["twin_2000"]:
        print(f"| {r['form']} | {r['nu']:g} | {r['D']} | {r['N']} | {r['per_step_s'] * 1e3:.2f} | "
              f"{r['compile_s']:.1f} |")
    print(f"\n(load average {res['load_average'][0]:.1f} on {res['cores']} cores: times are inflated by the load)")


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
