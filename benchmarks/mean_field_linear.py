"""Benchmark of the mean-field closed form (linear φ) and of its finite-width twin.

    python benchmarks/mean_field_linear.py [--quick] [--out benchmarks/out/mean_field_linear.json]

Closed form (:func:`dmft.families.mean_field.march_linear`, the marched reduced system, O(L T³ M) flops): compile
time and solve time after compilation (best of 3) against T, P (M = P, no test points) and depth L, with the target
case L = 5, T = 100, P = 20; plus the optional pieces: the dense residual check (:func:`global_residual`), the full
two-time objects (O(L T³ M²)) and the level-2 outliers of every hidden matrix at 10 steps. Twin: wall time of
:func:`dmft.families.mean_field.twin.train_network` (4 seeds, T = 20, depth 3) at N = 256 … 4096.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import jax
import numpy as np

from dmft.families.mean_field import input_gram, linear_outliers, march_linear
from dmft.families.mean_field._linear import full_two_time, global_residual
from dmft.families.mean_field.problem import synthetic_dataset
from dmft.families.mean_field.twin import train_network


def _best(fn, reps: int = 3) -> float:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        out.append(time.perf_counter() - t0)
    return min(out)


def time_closed_form(T: int, P: int, depth: int, extras: bool = False) -> dict:
    d = synthetic_dataset(jax.random.key(0), points=P, test_points=0, input_dim=10)
    kx = input_gram(d.x_all)
    hp = dict(depth=depth, gamma0=1.0, sigma=1.0, sigma_w=1.0, lr=0.02)
    t0 = time.perf_counter()
    st = jax.block_until_ready(march_linear(kx, d.y_train, steps=T, **hp))
    first = time.perf_counter() - t0
    solve = _best(lambda: march_linear(kx, d.y_train, steps=T, **hp))
    row = {"T": T, "P": P, "depth": depth, "first_call_s": round(first, 3), "solve_s": round(solve, 4),
           "final_loss": float(0.5 * np.mean(np.asarray(st.delta[-1, :P]) ** 2))}
    if extras:
        jax.block_until_ready(global_residual(st, kx, d.y_train, **hp))
        row["residual_check_s"] = round(_best(lambda: global_residual(st, kx, d.y_train, **hp), 2), 4)
        two = dict(depth=depth, gamma0=1.0, sigma=1.0, lr=0.02, n_train=P)
        jax.block_until_ready(full_two_time(st, kx, **two))
        row["two_time_s"] = round(_best(lambda: full_two_time(st, kx, **two), 1), 3)
        steps = np.linspace(0, T - 1, 10).astype(int)
        kw = dict(depth=depth, gamma0=1.0, sigma=1.0, lr=0.02, n_train=P)
        t0 = time.perf_counter()
        for layer in range(1, depth):
            jax.block_until_ready(linear_outliers(st, layer, steps, **kw).sv)
        row["outliers_first_s"] = round(time.perf_counter() - t0, 3)
        row["outliers_s"] = round(_best(lambda: [linear_outliers(st, layer, steps, **kw).sv
                                                 for layer in range(1, depth)], 1), 3)
    return row


def time_twin(width: int, steps: int = 20, seeds: int = 4, depth: int = 3) -> dict:
    d = synthetic_dataset(jax.random.key(0), points=10, test_points=0, input_dim=5)
    kw = dict(width=width, depth=depth, gamma0=3.0, sigma=0.7, sigma_w=1.0, lr=0.05, steps=steps, seeds=seeds,
              record_every=4)
    t0 = time.perf_counter()
    train_network(d.x_train, d.y_train, None, key=jax.random.key(1), **kw)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    train_network(d.x_train, d.y_train, None, key=jax.random.key(2), **kw)
    return {"width": width, "steps": steps, "seeds": seeds, "depth": depth, "first_call_s": round(first, 2),
            "run_s": round(time.perf_counter() - t0, 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="benchmarks/out/mean_field_linear.json")
    args = ap.parse_args()
    rows = {"machine": f"{platform.processor() or platform.machine()}, {jax.device_count()} device(s), "
                       f"jax {jax.__version__}", "closed_form": [], "twin": []}
    rows["closed_form"].append(time_closed_form(100, 20, 5, extras=True))
    print(rows["closed_form"][-1], flush=True)
    grid = [(50, 20, 5), (200, 20, 5), (100, 10, 5), (100, 40, 5), (100, 20, 2), (100, 20, 10)]
    if args.quick:
        grid = grid[:2]
    for T, P, L in grid:
        rows["closed_form"].append(time_closed_form(T, P, L))
        print(rows["closed_form"][-1], flush=True)
    for n in ((256, 1024) if args.quick else (256, 1024, 4096)):
        rows["twin"].append(time_twin(n))
        print(rows["twin"][-1], flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
