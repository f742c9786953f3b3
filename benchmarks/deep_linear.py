"""Benchmark of the deep-linear DMFT solver and its finite-width twin.

    python benchmarks/deep_linear.py [--quick] [--out benchmarks/out/deep_linear.json]

Reports, for T = 100 … 2000 and depth L = 1 … 4: compile time, solve time after compilation (best of 2) and the
memory XLA plans for the solve (arguments + outputs + temporaries, from the compiled executable). Then the cost of
the finite-width twin reaching the accuracy of the theory: wall time of the twin at D = 64 … 512 with the seed
count needed to bring the RMS relative error of its seed-averaged test loss to a few per cent.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import dmft
from dmft.families import deep_linear as dl
from dmft.families.deep_linear import twin as sdl


def time_solver(T: int, depth: int) -> dict:
    cfg = dmft.load_config(overrides={"model.depth": depth, "optim.steps": T, "optim.lr": 0.02, "model.gamma0": 1.0})
    p = dl.params_from_config(cfg)
    th = jnp.asarray(1e6)
    t0 = time.perf_counter()
    compiled = dl._solve.lower(p, T, depth, False, th, True).compile()
    compile_s = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    mem_mb = (mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes) / 1e6
    runs = []
    for _ in range(2):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(p, th))
        runs.append(time.perf_counter() - t0)
    return {"T": T, "depth": depth, "compile_s": compile_s, "solve_s": min(runs), "memory_MB": mem_mb}


def time_level2(T: int, depth: int) -> dict:
    """Level 2 (outliers of every layer at every step t < T) after compilation."""
    cfg = dmft.load_config("configs/deep_linear_mup.toml", overrides={"model.depth": depth, "optim.steps": T})
    p = dl.params_from_config(cfg)
    sol = dl.solve(p, T, depth)
    fn = jax.jit(lambda s, q: dl._level2(s, q, depth, 4))
    t0 = time.perf_counter()
    jax.block_until_ready(fn(sol, p))
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(fn(sol, p))
    run = time.perf_counter() - t0
    return {"T": T, "depth": depth, "compile_s": first - run, "level2_s": run, "per_step_ms": 1e3 * run / T}


def twin_cost(depth: int = 2, T: int = 20) -> list[dict]:
    cfg = dmft.load_config("configs/deep_linear_mup.toml", overrides={
        "model.depth": depth, "optim.steps": T, "simulate.record_spectra": False})
    t0 = time.perf_counter()
    th = dl.solve_config(cfg)
    theory_s = time.perf_counter() - t0
    out = []
    for dim, seeds in ((64, 64), (128, 64), (256, 64), (512, 32)):
        c = cfg.replace({"simulate.dim": dim, "simulate.seeds": seeds})
        sdl.simulate_config(c.replace({"simulate.seeds": min(seeds, 8)}))  # compile
        t0 = time.perf_counter()
        sim = sdl.simulate_config(c)
        wall = time.perf_counter() - t0
        err = (sim.test_loss.mean("seed") - th.test_loss) / th.test_loss
        out.append({"dim": dim, "seeds": seeds, "twin_s": wall, "rms_rel_error": float(np.sqrt((err**2).mean())),
                    "theory_s_incl_compile": theory_s})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="T up to 500 only")
    ap.add_argument("--out", default="benchmarks/out/deep_linear.json")
    args = ap.parse_args()
    Ts = [100, 250, 500] if args.quick else [100, 250, 500, 1000, 2000]
    rows = []
    print(f"machine: {platform.processor() or platform.machine()}, {jax.device_count()} {jax.default_backend()} "
          f"device(s), jax {jax.__version__}")
    print(f"{'T':>5} {'L':>2} {'compile s':>10} {'solve s':>9} {'memory MB':>10}")
    for depth in (1, 2, 3, 4):
        for T in Ts:
            if T == 2000 and depth > 2:
                continue  # ~8× the T = 1000 time; run by hand if needed
            r = time_solver(T, depth)
            rows.append(r)
            print(f"{T:>5} {depth:>2} {r['compile_s']:>10.1f} {r['solve_s']:>9.2f} {r['memory_MB']:>10.0f}", flush=True)
    for depth in (1, 2, 3, 4):
        sub = [r for r in rows if r["depth"] == depth and r["T"] >= 250]
        if len(sub) >= 2:
            slope = np.polyfit(np.log([r["T"] for r in sub]), np.log([r["solve_s"] for r in sub]), 1)[0]
            print(f"depth {depth}: solve time ∝ T^{slope:.2f} (T ≥ 250)")
    print("level 2 (outliers of every layer at every step):")
    level2 = []
    for depth in (2, 3):
        for T in ([20, 40, 80] if args.quick else [20, 40, 80, 160]):
            r = time_level2(T, depth)
            level2.append(r)
            print(f"  T = {T:>4}, L = {depth}: {r['level2_s']:.2f} s ({r['per_step_ms']:.1f} ms per step), "
                  f"compile {r['compile_s']:.1f} s", flush=True)
    print("twin cost (depth 2, T = 20):")
    twin = twin_cost()
    for r in twin:
        print(f"  D = {r['dim']:>4}, {r['seeds']:>3} seeds: {r['twin_s']:6.2f} s, "
              f"RMS rel. error {r['rms_rel_error']:.3f}"
              f"  (theory {r['theory_s_incl_compile']:.2f} s incl. compile)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"solver": rows, "level2": level2, "twin": twin}, indent=1))


if __name__ == "__main__":
    main()
