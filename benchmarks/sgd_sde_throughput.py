"""Throughput of the sgd_sde integrators: ensemble members × steps per second, JAX against a NumPy loop.

    .venv/bin/python benchmarks/sgd_sde_throughput.py [--steps 2000] [--shape 32 16]

JAX: :func:`dmft.families.sgd_sde.sde_ensemble` (one compiled ``lax.scan`` over steps, ``vmap`` over members),
timed after compilation (compile time reported separately). NumPy baseline: the same Euler–Maruyama step
(teacher drift, state-dependent isotropic noise, weight decay) for all members at once, in a Python loop over
steps. Both record the singular values 10 times per run.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import dmft
from dmft.families.sgd_sde import _solve, problem


def _config(drift: str, level: str, rows: int, cols: int, ensemble: int, steps: int) -> dmft.Config:
    return dmft.load_config(
        None,
        {
            "model.family": "sgd_sde",
            "model.drift": drift,
            "model.rows": rows,
            "model.cols": cols,
            "data.noise": 1.0,
            "optim.lr": 0.02,
            "optim.batch_size": 4,
            "optim.grad_noise": 0.5,
            "optim.weight_decay": 0.1,
            "optim.steps": steps + 1,
            "solver.record_every": steps // 10,
            "solver.ensemble": ensemble,
            "solver.level": level,
            "solver.substeps": 1,
        },
    )


def jax_rate(drift: str, level: str, rows: int, cols: int, ensemble: int, steps: int) -> tuple[float, float]:
    """(member-steps per second, compile seconds)."""
    cfg = _config(drift, level, rows, cols, ensemble, steps)
    values = {k: jnp.asarray(v, jnp.float64) for k, v in problem.hyper_values(cfg).items()}
    static = _solve._static(cfg)
    t0 = time.perf_counter()
    compiled = _solve.sde_ensemble.lower(values, 0, **static).compile()
    t1 = time.perf_counter()
    jax.block_until_ready(compiled(values, 0))
    best = np.inf
    for _ in range(3):
        t2 = time.perf_counter()
        jax.block_until_ready(compiled(values, 0))
        best = min(best, time.perf_counter() - t2)
    return ensemble * steps / best, t1 - t0


def numpy_rate(rows: int, cols: int, ensemble: int, steps: int) -> float:
    """The teacher-drift matrix SDE in NumPy, members vectorised, a Python loop over steps."""
    rng = np.random.default_rng(0)
    lr, batch, label, inject, wd = 0.02, 4, 1.0, 0.5, 0.1
    w = rng.normal(size=(ensemble, rows, cols)) / np.sqrt(cols)
    w_star = rng.normal(size=(ensemble, rows, cols)) / np.sqrt(cols)
    t0 = time.perf_counter()
    for k in range(steps):
        err = w - w_star
        var = inject**2 + label**2 + (cols + 1) * np.sum(err**2, axis=(1, 2)) / (rows * cols)
        diff = lr * var / batch
        w = w - lr * (err + wd * w) + np.sqrt(diff * lr)[:, None, None] * rng.normal(size=w.shape)
        if k % (steps // 10) == 0:
            np.linalg.svd(w, compute_uv=False)
    return ensemble * steps / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--shape", type=int, nargs=2, default=(32, 16))
    args = p.parse_args()
    rows, cols = args.shape
    print(f"shape {rows}×{cols}, {args.steps} steps; throughput in member-steps per second")
    header = ("ensemble", "JAX matrix", "(compile s)", "JAX sv", "NumPy loop", "JAX/NumPy")
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, (9, 12, 11, 10, 11, 9), strict=True)))
    for ensemble in (1, 16, 256):
        jm, cm = jax_rate("teacher", "matrix", rows, cols, ensemble, args.steps)
        js, _ = jax_rate("teacher", "singular_values", rows, cols, ensemble, args.steps)
        nr = numpy_rate(rows, cols, ensemble, args.steps)
        print(f"{ensemble:>9} {jm:>12.3g} {cm:>11.2f} {js:>10.3g} {nr:>11.3g} {jm / nr:>9.1f}")


if __name__ == "__main__":
    main()
