"""Scaling out sweeps (issue 14): cold vs warm main job, sweep throughput vs host devices and vs Ray workers, and
memory per point. Prints one table and writes benchmarks/out/scale_out.json.

    python benchmarks/scale_out.py            # everything (~10 min on 2 cores)
    python benchmarks/scale_out.py --quick    # a 64-point grid, no Ray
    python benchmarks/scale_out.py --only main|devices|ray

Every measurement runs in a fresh subprocess (a new process is what a user starts). "cold" uses an empty
compilation cache; "warm" the same cache again. Throughput is measured on a warm cache, without a point store,
so that it counts computing (and tracing) only: points / wall-clock seconds of the sweep call.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"

_SWEEP = r"""
import json, sys, time
import dmft
from dmft.sweep import cache, executors, sharding
cache.enable()
cfg = dmft.load_config(sys.argv[1], overrides=json.loads(sys.argv[2]))
kw = json.loads(sys.argv[3])
sizes = []
real = sharding.BatchSizer.observe
def observe(self, points, result_bytes):
    real(self, points, result_bytes)
    sizes.append((self.point_bytes, result_bytes / max(points, 1)))
sharding.BatchSizer.observe = observe
dmft.sweep(cfg, progress=False, **kw)           # warm-up: compiles (or loads) every program
t = time.perf_counter()
grid = dmft.sweep(cfg, progress=False, **kw)
dt = time.perf_counter() - t
n = 1
for _, v in cfg.sweep:
    n *= len(v)
print(json.dumps({"points": n, "seconds": dt, "point_bytes": sizes[-1][0] if sizes else None,
                  "result_bytes": sizes[-1][1] if sizes else None}))
"""


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.update(extra)
    return env


def main_job(cache_dir: str) -> dict[str, float]:
    """`dmft run configs/deep_linear_mup.toml` (the README's main job, figures included), cold then warm."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label in ("cold", "warm", "warm again"):
            t = time.perf_counter()
            proc = subprocess.run(["dmft", "run", "configs/deep_linear_mup.toml", "--out", tmp], cwd=ROOT,
                                  env=_env(DMFT_CACHE_DIR=cache_dir), capture_output=True, text=True)
            if proc.returncode:
                raise RuntimeError(proc.stderr[-2000:])
            out[label] = time.perf_counter() - t
    return out


def sweep_in(devices: int, config: str, overrides: dict, kw: dict, cache_dir: str) -> dict:
    env = _env(DMFT_CACHE_DIR=cache_dir, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", _SWEEP, config, json.dumps(overrides), json.dumps(kw)], cwd=ROOT,
                          env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", choices=("main", "devices", "ray"), default=None)
    args = ap.parse_args()
    config = str(ROOT / "configs/sweeps/scale_out_1000.toml")
    # the full benchmark: 1000 points; quick: 4 × 4 × 4
    overrides = {} if not args.quick else {"sweep.lr": [0.01, 0.02, 0.04, 0.08], "sweep.width_ratio": [1, 2, 4, 8],
                                           "sweep.gamma0": [0.5, 1, 2, 4]}
    rows: list[tuple[str, str, str]] = []
    report: dict = {"cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as cache_dir:
        if args.only in (None, "main"):
            t = main_job(cache_dir)
            report["main_job_s"] = t
            for k, v in t.items():
                rows.append((f"main job (dmft run deep_linear_mup), {k} cache", f"{v:.1f} s", "wall clock"))
        if args.only in (None, "devices"):
            report["devices"] = {}
            for d in (1, 2, 4):
                r = sweep_in(d, config, overrides, {}, cache_dir)
                report["devices"][d] = r
                rows.append((f"sweep, {d} host device{'s' * (d > 1)}", f"{r['points'] / r['seconds']:.1f} pt/s",
                             f"{r['points']} points in {r['seconds']:.1f} s"))
            r = report["devices"][1]
            if r["point_bytes"]:
                rows.append(("memory per point (estimate used for batch sizes)", f"{r['point_bytes'] / 1e6:.2f} MB",
                             f"result {r['result_bytes'] / 1e3:.1f} kB per point"))
        if args.only in (None, "ray"):
            try:
                import ray  # noqa: F401
            except ImportError:
                rows.append(("ray", "skipped", "pip install '.[ray]'"))
            else:
                report["ray"] = {}
                for w in (1, 2):
                    r = sweep_in(1, config, overrides, {"executor": "ray", "workers": w}, cache_dir)
                    report["ray"][w] = r
                    rows.append((f"sweep, Ray, {w} worker{'s' * (w > 1)}", f"{r['points'] / r['seconds']:.1f} pt/s",
                                 f"{r['points']} points in {r['seconds']:.1f} s (local instance started in the call)"))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "scale_out.json").write_text(json.dumps(report, indent=1))
    width = max(len(r[0]) for r in rows)
    print(f"{'measurement':<{width}}  {'value':>12}  note")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>12}  {note}")


if __name__ == "__main__":
    main()
