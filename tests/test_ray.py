"""The Ray executor against a local Ray instance (2 CPUs): the merged grid equals the local sweep; a worker killed
mid-sweep is retried with no point lost; an interrupted sweep resumes without recomputing finished points.
Skipped when Ray is not installed (it is the optional extra ``dmft-spectra[ray]``)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

import dmft  # noqa: E402
from dmft.sweep import PointStore, executors  # noqa: E402

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="finds Ray workers through /proc")

SWEEP = """
lr = [0.02, 0.05, 0.1]
gamma0 = [0.5, 2.0]
depth = [1, 2]
"""  # on the shared tiny deep-linear config (conftest.tiny_sweep_toml)
B = 2  # points per task and per vmapped call: the programs of tests/test_sweep_*.py (compilation cache)


@pytest.fixture(scope="module")
def cluster():
    started = executors._ray_connect(None, 2)
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def cfg(tmp_path_factory, tiny_sweep_toml):
    path = tmp_path_factory.mktemp("cfg") / "tiny.toml"
    path.write_text(tiny_sweep_toml(SWEEP))
    return dmft.load_config(path)


@pytest.fixture(scope="module")
def local(cfg):
    return dmft.sweep(cfg, progress=False, batch_size=B)


def _busy_workers() -> list[int]:
    """Pids of Ray workers running a sweep task right now."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if cmd.startswith("ray::_ray_batch"):
                pids.append(int(d.name))
    return pids


def test_ray_sweep_survives_a_killed_worker_and_equals_the_local_sweep(cluster, cfg, local, tmp_path):
    import threading

    killed: list[int] = []
    stop = threading.Event()

    def kill_the_first_busy_worker():  # SIGKILL, as a lost machine or an OOM killer would
        while not stop.is_set() and not killed:
            busy = _busy_workers()
            if busy:
                os.kill(busy[0], signal.SIGKILL)
                killed.append(busy[0])
            time.sleep(0.01)

    chaos = threading.Thread(target=kill_the_first_busy_worker, daemon=True)
    chaos.start()
    try:
        grid = dmft.sweep(cfg, out_dir=tmp_path, executor="ray", batch_size=B, progress=False)
    finally:
        stop.set()
        chaos.join()
    assert killed, "no busy Ray worker was found to kill"
    assert grid.equals(local)  # bit for bit: the same programs on the same points
    store = PointStore(tmp_path, "deep_linear")
    assert all(store.has(p, "solve") for _, p in cfg.grid())
    assert len(list((tmp_path / "points").glob("*.nc"))) == 12


def test_interrupted_ray_sweep_resumes_without_recomputing(cluster, cfg, local, tmp_path, interrupt_after):
    with pytest.raises(KeyboardInterrupt):
        dmft.sweep(cfg, out_dir=tmp_path, executor="ray", batch_size=B, progress=False, on_point=interrupt_after(3))
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "points").glob("*.nc")}
    assert len(before) >= 3
    grid = dmft.sweep(cfg, out_dir=tmp_path, executor="ray", batch_size=B, progress=False)
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())  # finished points were not recomputed
    assert grid.equals(local)
    np.testing.assert_array_equal(grid.test_loss.values, local.test_loss.values)


def test_missing_ray_is_a_one_line_error(monkeypatch, cfg, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(dmft.ConfigError, match=r"pip install 'dmft-spectra\[ray\]'"):
        dmft.sweep(cfg, out_dir=tmp_path, executor="ray", progress=False)
