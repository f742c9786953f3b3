"""Benchmark of the deep-linear DMFT solver and its finite-width twin.

    python benchmarks/deep_linear.py [--quick] [--out benchmarks/out/deep_linear.json]

Reports, for T = 100 … 2000 and depth L = 1 … 4: compile time, solve time after compilation (best of 2), the
achieved GFLOP/s of the row march (model: (30 + 28L)·T³ flops, issue 16) against the machine's float64 matmul rate
and its matrix–vector (bandwidth-bound) rate, both measured here, and the memory XLA plans for the solve. Then
the cost of the finite-width twin reaching the accuracy of the theory: wall time of the twin at D = 64 … 512 with
the seed count needed to bring the RMS relative error of its seed-averaged test loss to a few per cent.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # LAPACK calls of level 2: see benchmarks/spectra.py

import argparse
import json
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import dmft
from dmft.families.deep_linear import theory as dl
from dmft.families.deep_linear import twin as sdl


def march_flops(T: int, depth: int) -> float:
    """Flops of the row march: every row multiplies ~(30 + 28L)/2 row vectors with T×T buffers (2T² flops each)."""
    return (30 + 28 * depth) * float(T) ** 3


def machine_rates(n: int = 2000, v: int = 4000) -> dict:
    """float64 matmul GFLOP/s (n×n @ n×n) and matrix–vector GFLOP/s / GB/s (v×v @ v): the roofline of the march."""
    a = jax.random.normal(jax.random.key(0), (n, n))
    mm = jax.jit(lambda x: x @ x)
    jax.block_until_ready(mm(a))
    t0 = time.perf_counter()
    for _ in range(3):
        jax.block_until_ready(mm(a))
    gemm = 3 * 2 * n**3 / (time.perf_counter() - t0) / 1e9
    m = jax.random.normal(jax.random.key(1), (v, v))
    x = jnp.ones(v)
    mv = jax.jit(lambda m, x: jax.lax.fori_loop(0, 20, lambda i, y: m @ y / v, x))
    jax.block_until_ready(mv(m, x))
    t0 = time.perf_counter()
    jax.block_until_ready(mv(m, x))
    dt = (time.perf_counter() - t0) / 20
    return {"gemm_gflops": gemm, "gemv_gflops": 2 * v * v / dt / 1e9, "gemv_GBps": 8 * v * v / dt / 1e9}


def time_solver(T: int, depth: int) -> dict:
    cfg = dmft.load_config(overrides={"model.depth": depth, "optim.steps": T, "optim.lr": 0.02, "model.gamma0": 1.0})
    p = dl.params_from_config(cfg)
    th = jnp.asarray(1e6)
    t0 = time.perf_counter()
    compiled = dl._solve.lower(p, T, depth, False, th, True, depth >= dl.LAYER_SCAN_DEPTH).compile()
    compile_s = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    mem_mb = (mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes) / 1e6
    runs = []
    for _ in range(2):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(p, th))
        runs.append(time.perf_counter() - t0)
    best = min(runs)
    return {"T": T, "depth": depth, "compile_s": compile_s, "solve_s": best, "memory_MB": mem_mb,
            "gflops": march_flops(T, depth) / best / 1e9}


def time_level2(T: int, depth: int) -> dict:
    """Level 2 (outliers of every layer at every step t < T) after compilation."""
    cfg = dmft.load_config("configs/deep_linear_mup.toml", overrides={"model.depth": depth, "optim.steps": T})
    p = dl.params_from_config(cfg)
    sol = dl.solve(p, T, depth)
    steps = np.arange(T)
    fn = lambda s, q: dl._level2(s, q, depth, 4, steps)  # noqa: E731  (not jitted: level 2 sizes its reduced
    # problems from the measured spike ranks, which needs concrete Grams)
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
    rates = machine_rates()
    print(f"float64 matmul {rates['gemm_gflops']:.1f} GFLOP/s; matrix-vector {rates['gemv_gflops']:.1f} GFLOP/s "
          f"({rates['gemv_GBps']:.1f} GB/s)")
    print(f"{'T':>5} {'L':>2} {'compile s':>10} {'solve s':>9} {'GFLOP/s':>8} {'% matmul':>9} {'memory MB':>10}")
    for depth in (1, 2, 3, 4):
        for T in Ts:
            if T == 2000 and depth > 2:
                continue  # ~8× the T = 1000 time; run by hand if needed
            r = time_solver(T, depth)
            rows.append(r)
            print(f"{T:>5} {depth:>2} {r['compile_s']:>10.1f} {r['solve_s']:>9.2f} {r['gflops']:>8.1f} "
                  f"{100 * r['gflops'] / rates['gemm_gflops']:>8.0f}% {r['memory_MB']:>10.0f}", flush=True)
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
    Path(args.out).write_text(json.dumps({"machine": rates, "solver": rows, "level2": level2, "twin": twin}, indent=1))


if __name__ == "__main__":
    main()
