"""Speed of the level-2 outlier solver (dmft.spectra.outliers).

1. One spike problem of rank k (k×k Grams, determinant size 2k): compile time and run time of
   ``outlier_singular_values`` against k, and of the independent determinant scan for comparison.
2. T×T level-1 Grams: ``outliers_over_time`` for every step t = 0..T−1 in one compiled loop, against T.
3. Level 2 inside the deep-linear solve (``solver.outliers``, default step selection, leading-block solves): the
   extra time over the level-1 solve against T and depth (second call, after compilation).

The Grams come from synthetic adaptive spikes on a 400×400 Gaussian matrix (spectra.md §12 (i)); timings do not
depend on where the Grams come from. Run: ``.venv/bin/python benchmarks/spectra.py [--quick]``.
"""

from __future__ import annotations

import os

# OpenBLAS threads fight XLA's pool (and other processes) for the few cores of a CPU box: a 100×100 SVD took
# 140 ms with the default threading on the 2-core test machine and 0.5 ms with one thread.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

import dmft._jax  # noqa: F401
from dmft import spectra as sp
from dmft.spectra.outliers import _outlier_sv, _over_time


def _grams(n: int, rank: int, seed: int = 0) -> sp.Grams:
    k1, k2 = jax.random.split(jax.random.key(seed))
    x0 = sp.sample_gaussian(k1, n, n, 1.0)
    g, phi = sp.adaptive_spikes(k2, x0, rank, 1.0)
    return sp.grams_from_spikes(x0, g, phi, float(n))


def _time(fn, repeats: int) -> tuple[float, float]:
    """(first call incl. compile, median of the next calls), seconds."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        runs.append(time.perf_counter() - t0)
    return first, statistics.median(runs)


def bench_rank(ranks: list[int], repeats: int) -> None:
    print("one problem of rank k (k_max = 4)")
    print(f"{'k':>4} {'n_out':>5} {'compile+run s':>14} {'run ms':>9} {'scan compile+run s':>19} {'scan run ms':>12}")
    for k in ranks:
        gr = _grams(400, k)
        c = 0.8 * jnp.eye(k)
        _outlier_sv.clear_cache()
        first, run = _time(lambda: sp.outlier_singular_values(gr, c, 1.0, 1.0, k_max=4), repeats)
        n_out = int(sp.outlier_singular_values(gr, c, 1.0, 1.0, k_max=4).n_outliers)
        s_first, s_run = _time(lambda: sp.scan_determinant_roots(gr, c, 1.0, 1.0, k_max=4), max(1, repeats // 3))
        print(f"{k:>4} {n_out:>5} {first:>14.2f} {run * 1e3:>9.2f} {s_first:>19.2f} {s_run * 1e3:>12.1f}")


def bench_steps(horizons: list[int], repeats: int) -> None:
    print("\nall steps t = 0..T-1 from T×T Grams (k_max = 4), C = 0.8 I (a deep-linear layer has C = ηγ0 I)")
    print(f"{'T':>4} {'compile+run s':>14} {'run ms':>9} {'ms / step':>10} {'outliers at T-1':>16} "
          f"{'full-rank ms':>13}")
    for horizon in horizons:
        gr = _grams(400, horizon)
        c = 0.8 * jnp.eye(horizon)
        _over_time.clear_cache()
        first, run = _time(lambda: sp.outliers_over_time(gr, c, 1.0, 1.0, k_max=4), repeats)
        _, full = _time(lambda: sp.outliers_over_time(gr, c, 1.0, 1.0, k_max=4, rank_reduce=False), 1)
        n_last = int(sp.outliers_over_time(gr, c, 1.0, 1.0, k_max=4).n_outliers[-1])
        print(f"{horizon:>4} {first:>14.2f} {run * 1e3:>9.1f} {run * 1e3 / horizon:>10.2f} {n_last:>16} "
              f"{full * 1e3:>13.1f}")


def bench_deep_linear(horizons: list[int], depths: list[int]) -> None:
    import dmft
    from dmft.families import deep_linear as dl

    print("\nlevel 2 in the deep-linear solve (configs/deep_linear_mup.toml, default level-2 steps)")
    print(f"{'depth':>5} {'T':>5} {'steps':>6} {'level 1 s':>10} {'level 1+2 s':>12} {'level 2 ms / step':>18}")
    for depth in depths:
        for horizon in horizons:
            cfg = dmft.load_config("configs/deep_linear_mup.toml", overrides={
                "optim.steps": horizon, "model.depth": depth, "solver.outliers": False})
            on = cfg.replace({"solver.outliers": True})
            times = []
            for c in (cfg, on):
                dl.solve_config(c)  # compile
                t0 = time.perf_counter()
                ds = dl.solve_config(c.replace({"optim.lr": c.optim.lr * 1.01}))
                times.append(time.perf_counter() - t0)
            n = int(ds.outlier_evaluated.sum())
            print(f"{depth:>5} {horizon:>5} {n:>6} {times[0]:>10.2f} {times[1]:>12.2f} "
                  f"{(times[1] - times[0]) * 1e3 / (n * depth):>18.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    args = parser.parse_args()
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, {jax.device_count()} device(s)")
    ranks = [2, 4, 8] if args.quick else [1, 2, 4, 8, 16, 32, 64]
    horizons = [5, 10] if args.quick else [10, 20, 40, 80]
    bench_rank(ranks, repeats=5)
    bench_steps(horizons, repeats=3)
    bench_deep_linear([40] if args.quick else [40, 100, 200, 400], [2] if args.quick else [2, 3])


if __name__ == "__main__":
    main()
