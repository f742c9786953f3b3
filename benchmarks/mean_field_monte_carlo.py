"""Benchmark of the mean-field Monte Carlo single-site solver (dmft/families/mean_field/_monte_carlo.py).

    python benchmarks/mean_field_monte_carlo.py [--quick] [--out benchmarks/out/mean_field_monte_carlo.json]

1. Target: two-layer ReLU (depth 1), T = 100, P = 25, S = 2000: first call (compilation included) and run time
   after compilation (best of 2, a fresh key each run so nothing is cached), for both outputs.
2. Scaling of the run time (after compile) with T, P, S and the depth (depth ≥ 2: responses by jvp, O((TM)³) per
   sample, and by Stein, O((TM)²) per sample).
Each row: first-call and run seconds, converged, final train loss and its Monte Carlo error.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp

import dmft._jax  # noqa: F401
from dmft.families.mean_field._monte_carlo import solve_monte_carlo

ROOT = Path(__file__).resolve().parents[1]
def problem(P: int, D: int = 10, seed: int = 0) -> tuple[jax.Array, jax.Array]:
    x = jax.random.normal(jax.random.key(seed), (P, D))
    return x @ x.T / D, jnp.tanh(x[:, 0])


def run(P: int, T: int, S: int, depth: int, activation: str = "relu", response: str = "jvp",
        output: str = "exact", lr: float = 0.5) -> dict:
    kx, y = problem(P)
    kw = dict(activation=activation, depth=depth, gamma0=1.0, sigma=1.0, sigma_w=1.0, lr=lr, steps=T, samples=S,
              response=response, output=output, iterations=200)
    t0 = time.perf_counter()
    jax.block_until_ready(solve_monte_carlo(kx, y, key=jax.random.key(0), **kw))
    first = time.perf_counter() - t0
    best = float("inf")
    for k in (1, 2):
        t0 = time.perf_counter()
        s = jax.block_until_ready(solve_monte_carlo(kx, y, key=jax.random.key(k), **kw))
        best = min(best, time.perf_counter() - t0)
    row = dict(P=P, T=T, S=S, depth=depth, activation=activation, response=response, output=output,
               first_call_s=round(first, 2), run_s=round(best, 3), converged=bool(s.converged),
               final_train_loss=float(s.train_loss[-1]),
               mc_error=float(s.mc_error[-1]))
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="the target rows only")
    ap.add_argument("--parts", default="target,depth1,jvp,stein", help="comma-separated subset")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "mean_field_monte_carlo.json"))
    args = ap.parse_args()
    parts = {"target"} if args.quick else set(args.parts.split(","))
    rows = []
    if "target" in parts:
        rows += [run(25, 100, 2000, 1, output=o) for o in ("exact", "tangent")]
    if "depth1" in parts:
        rows += [run(25, T, 2000, 1) for T in (25, 50, 200)]
        rows += [run(P, 100, 2000, 1) for P in (10, 50)]
        rows += [run(25, 100, S, 1) for S in (500, 8000)]
    for resp in ("jvp", "stein"):
        if resp in parts:
            rows += [run(10, T, 1000, 2, activation="tanh", response=resp) for T in (10, 20)]
            rows += [run(10, 10, 1000, 3, activation="tanh", response=resp)]
    if "stein" in parts:
        rows += [run(10, 20, 4000, 2, activation="tanh", response="stein")]
    meta = dict(machine=platform.processor() or platform.machine(), cpus=os.cpu_count(), jax=jax.__version__,
                backend=jax.default_backend())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
