"""Issue 14's "done when", as a slow test (python -m pytest -m slow tests/test_sweep_scale.py; ~5 min on 2 cores):
the 1000-point shipped grid configs/sweeps/scale_out_1000.toml through the command line as a job array of 4 shards
(run at the same time) + --merge, and through Ray on a local instance with a worker killed mid-sweep and the driver
interrupted then resumed; both equal the local sweep, with no point lost or computed twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import dmft
from dmft.io import load_dataset

pytestmark = pytest.mark.slow
CONFIG = "configs/sweeps/scale_out_1000.toml"


@pytest.fixture(scope="module")
def local(repo_root):
    return dmft.sweep(dmft.load_config(repo_root / CONFIG), progress=False, batch_size=16)


def test_job_array_of_four_shards_equals_the_local_sweep(repo_root, tmp_path, local):
    out = tmp_path / "arr"
    cmd = [sys.executable, "-m", "dmft.cli", "sweep", CONFIG, "--out", str(out), "--batch-size", "16"]
    procs = [subprocess.Popen([*cmd, "--shard", f"{i}/4"], cwd=repo_root, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(4)]
    outs = [p.communicate(timeout=1200) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e[-1000:] for _, e in outs]
    assert len(list((out / "points").glob("*.nc"))) == 1000
    merged = subprocess.run([sys.executable, "-m", "dmft.cli", "sweep", "--merge", str(out), "--no-figures"],
                            cwd=repo_root, capture_output=True, text=True, timeout=1200)
    assert merged.returncode == 0, merged.stderr[-2000:]
    grid = load_dataset(out / "result.nc")
    np.testing.assert_allclose(grid.test_loss.values, local.test_loss.values, rtol=1e-12, equal_nan=True)


def test_ray_with_a_killed_worker_and_a_resume_equals_the_local_sweep(repo_root, tmp_path, local):
    pytest.importorskip("ray")
    from dmft.sweep import executors

    cfg = dmft.load_config(repo_root / CONFIG)
    started = executors._ray_connect(None, 2)
    try:
        done: list = []
        killed: list = []

        def chaos(coords, ds):
            done.append(coords)
            if len(done) == 50 and not killed:
                for _ in range(200):
                    busy = [int(d) for d in os.listdir("/proc") if d.isdigit() and _cmd(d).startswith("ray::_ray")]
                    if busy:
                        os.kill(busy[0], signal.SIGKILL)
                        killed.append(busy[0])
                        break
                    time.sleep(0.05)
            if len(done) == 400:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            dmft.sweep(cfg, out_dir=tmp_path, executor="ray", batch_size=16, progress=False, on_point=chaos)
        assert killed
        before = {p: p.stat().st_mtime_ns for p in (tmp_path / "points").glob("*.nc")}
        grid = dmft.sweep(cfg, out_dir=tmp_path, executor="ray", batch_size=16, progress=False)
        assert all(p.stat().st_mtime_ns == t for p, t in before.items())
        assert len(list((tmp_path / "points").glob("*.nc"))) == 1000
        assert grid.equals(local)
    finally:
        if started:
            import ray

            ray.shutdown()


def _cmd(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""
