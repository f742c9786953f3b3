"""How many programs XLA compiles (issue 16, item 5): per `dmft run` of every shipped config, and per sweep as the
number of points grows (the count must not grow with it). Prints one table and writes benchmarks/out/compiles.json.

    python benchmarks/compiles.py            # every shipped config + the sweep series (~10 min on 2 cores)
    python benchmarks/compiles.py --quick    # the main job and a short sweep series

Each measurement runs in a fresh subprocess with the persistent compilation cache off, so that every program
is compiled (a warm cache loads the same programs instead of compiling them). A compilation is one
``/jax/core/compile/backend_compile_duration`` event of ``jax.monitoring``; its total duration is reported too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"

_COUNT = r"""
import json, sys, time
import jax
events = []
jax.monitoring.register_event_duration_secs_listener(
    lambda name, secs, **kw: events.append(secs) if name == "/jax/core/compile/backend_compile_duration" else None)
import dmft
cfg = dmft.load_config(sys.argv[1], overrides=json.loads(sys.argv[2]))
t0 = time.perf_counter()
if sys.argv[3] == "run":
    dmft.solve(cfg)
else:
    dmft.sweep(cfg, progress=False)
print(json.dumps({"programs": len(events), "compile_s": round(sum(events), 2),
                  "wall_s": round(time.perf_counter() - t0, 2)}))
"""

SWEEP = "configs/sweeps/scale_out_1000.toml"


def count(config: str, overrides: dict, kind: str) -> dict:
    env = dict(os.environ, DMFT_NO_CACHE="1", JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
    out = subprocess.run([sys.executable, "-c", _COUNT, config, json.dumps(overrides), kind], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    configs = ["configs/deep_linear_mup.toml"] if args.quick else sorted(str(p.relative_to(ROOT))
                                                                          for p in (ROOT / "configs").glob("*.toml"))
    rows = []
    for cfg in configs:
        r = {"what": f"dmft run {Path(cfg).stem}", **count(cfg, {}, "run")}
        rows.append(r)
        print(f"{r['what']:<40} {r['programs']:>4} programs  {r['compile_s']:>6.1f} s compiling  {r['wall_s']:>6.1f} s")
    grids = {"sweep.lr": [0.01, 0.02, 0.05, 0.1], "sweep.width_ratio": [1, 2], "sweep.gamma0": [1, 2]}
    for n in ((1, 2, 4) if args.quick else (1, 2, 4, 8)):
        over = {k: v[: max(1, min(len(v), n))] for k, v in grids.items()}
        over["sweep.gamma0"] = grids["sweep.gamma0"][: 1 + (n >= 4)]
        pts = len(over["sweep.lr"]) * len(over["sweep.width_ratio"]) * len(over["sweep.gamma0"])
        r = {"what": f"dmft sweep scale_out ({pts} points)", "points": pts, **count(SWEEP, over, "sweep")}
        rows.append(r)
        print(f"{r['what']:<40} {r['programs']:>4} programs  {r['compile_s']:>6.1f} s compiling  {r['wall_s']:>6.1f} s")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "compiles.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
