"""Cost of the theory's sharpness (edge_of_stability.md §5; dmft.families.deep_linear.kernel).

For the reference run (L = 2, ν = 2, μP, γ0 = 3, η = 0.1, α = 2, σ = 0.6) and horizons T, it times

1. the level-1 solve (``solve``, second call);
2. ``kernel_spectrum`` over every step t < T on the training inputs: first call (compile + run) and second call;
3. the same on fresh inputs;
4. the twin's Lanczos trajectory (D = 250, one seed), for scale.

Run: ``.venv/bin/python benchmarks/eos.py [--quick]``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import time

import jax
import jax.numpy as jnp

from dmft._jax import float64
from dmft.config import load_config
from dmft.families.deep_linear.kernel import kernel_spectrum
from dmft.families.deep_linear.theory import DeepLinearParams, solve
from dmft.families.deep_linear.twin_kernel import simulate_kernel


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    jax.block_until_ready(out)
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    horizons = [11] if args.quick else [11, 21, 41]
    with float64():
        p = DeepLinearParams(*(jnp.asarray(v, dtype=jnp.float64) for v in (0.1, 3.0, 2.0, 0.6, 1.0, 2.0, 0.0, 1.0)))
        head = ("T", "solve", "train 1st", "train 2nd", "fresh 2nd", "per step")
        print(" ".join(f"{h:>10}" for h in head), " sharpness(T-1)")
        for T in horizons:
            solve(p, T, 2)
            sol, t_solve = _timed(lambda T=T: solve(p, T, 2))
            ks, t1 = _timed(lambda: kernel_spectrum(sol, p, 2).sharpness)
            ks, t2 = _timed(lambda: kernel_spectrum(sol, p, 2).sharpness)
            kernel_spectrum(sol, p, 2, fresh=True)
            _, t3 = _timed(lambda: kernel_spectrum(sol, p, 2, fresh=True).sharpness)
            print(f"{T:>10} {t_solve:10.2f} {t1:10.1f} {t2:10.2f} {t3:10.2f} {t2 / T:10.3f}  {float(ks[-1]):.4f}")
        cfg = load_config(None, {"model.width_ratio": 2.0, "model.gamma0": 3.0, "model.sigma": 0.6,
                                 "optim.lr": 0.1, "optim.steps": horizons[-1]})
        simulate_kernel(cfg, dim=250, seeds=1, fresh=True)
        _, tw = _timed(lambda: simulate_kernel(cfg, dim=250, seeds=1, fresh=True)["kernel_top"].values)
        print(f"twin (D = 250, one seed, T = {horizons[-1]}, train + fresh Lanczos at every step): {tw:.2f} s")


if __name__ == "__main__":
    main()
