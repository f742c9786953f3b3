"""The sweep point store: versioned points, stale points recomputed (and said), one writer per folder, atomic
writes that honour the umask (issue 11 item 3, issue 14)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import dmft
from dmft.io import config_to_toml, load_dataset, save_dataset
from dmft.sweep import PointStore, SweepLocked, code_hash, executors

SWEEP = """
lr = [0.02, 0.05, 0.1]
gamma0 = [0.5, 2.0]
"""  # on the shared tiny deep-linear config (conftest.tiny_sweep_toml)


@pytest.fixture
def tiny(tmp_path, tiny_sweep_toml):
    path = tmp_path / "tiny.toml"
    path.write_text(tiny_sweep_toml(SWEEP))
    return dmft.load_config(path)


@pytest.fixture
def counted(monkeypatch):
    """The configs the executors hand to the families (each point computed is counted once)."""
    seen: list = []
    real = executors._raw

    def spy(family, kind, cfgs):
        seen.extend(dict.fromkeys(cfgs))  # padded copies are not new points
        return real(family, kind, cfgs)

    monkeypatch.setattr(executors, "_raw", spy)
    return seen


def test_points_carry_config_version_and_code_hash(tiny, tmp_path):
    grid = dmft.sweep(tiny, out_dir=tmp_path / "s", progress=False, batch_size=2)
    files = sorted((tmp_path / "s" / "points").glob("*.nc"))
    assert len(files) == 6 and (tmp_path / "s" / "sweep.toml").is_file()
    store = PointStore(tmp_path / "s", "deep_linear")
    for coords, point in tiny.grid():
        ds = load_dataset(store.path(point, "solve"))
        assert ds.attrs["dmft_version"] == dmft.__version__
        assert ds.attrs["code_hash"] == code_hash("deep_linear") and len(ds.attrs["code_hash"]) == 12
        assert ds.attrs["config_toml"] == config_to_toml(point)
        np.testing.assert_array_equal(ds.test_loss, grid.test_loss.sel(lr=coords["optim.lr"],
                                                                       gamma0=coords["model.gamma0"]))
    # the folder's own sweep.toml reproduces the grid
    assert dmft.load_config(tmp_path / "s" / "sweep.toml").sweep == tiny.sweep


def test_stale_points_are_recomputed_and_the_user_told(tiny, tmp_path, counted, capsys):
    out = tmp_path / "s"
    dmft.sweep(tiny, out_dir=out, progress=False, batch_size=2)
    store = PointStore(out, "deep_linear")
    points = [p for _, p in tiny.grid()]
    # one point from an "older library", one from other solver code, one without any hash (pre-store format)
    for point, attrs in zip(points[:3], ({"dmft_version": "0.0.9"}, {"code_hash": "0123456789ab"},
                                          {"code_hash": None}), strict=True):
        path = store.path(point, "solve")
        ds = load_dataset(path)
        for k, v in attrs.items():
            if v is None:
                del ds.attrs[k]
            else:
                ds.attrs[k] = v
        save_dataset(ds, path, keep_previous=False)
    counted.clear()
    capsys.readouterr()
    grid = dmft.sweep(tiny, out_dir=out, progress=False, batch_size=2)
    assert sorted(map(config_to_toml, counted)) == sorted(map(config_to_toml, points[:3]))  # only the stale ones
    err = capsys.readouterr().err
    assert "3 saved points stale" in err and "dmft 0.0.9" in err and "0123456789ab" in err, err
    for point in points[:3]:
        assert load_dataset(store.path(point, "solve")).attrs["code_hash"] == code_hash("deep_linear")
    counted.clear()
    again = dmft.sweep(tiny, out_dir=out, progress=False, batch_size=2)
    assert counted == [] and again.identical(grid)


def test_code_hash_follows_the_solver_sources(monkeypatch, tmp_path):
    from dmft.sweep import points

    fake = tmp_path / "dmft" / "families" / "fam"
    fake.mkdir(parents=True)
    (fake / "theory.py").write_text("x = 1\n")
    (fake / "figures.py").write_text("y = 1\n")
    monkeypatch.setattr(points, "_ROOT", tmp_path)
    points.code_hash.cache_clear()
    try:
        h1 = points.code_hash("fam")
        (fake / "figures.py").write_text("y = 2\n")  # figures do not change results
        points.code_hash.cache_clear()
        assert points.code_hash("fam") == h1
        (fake / "theory.py").write_text("x = 2\n")
        points.code_hash.cache_clear()
        assert points.code_hash("fam") != h1
    finally:
        points.code_hash.cache_clear()


def test_a_second_sweep_on_the_same_folder_is_locked_out(tiny, tmp_path, repo_root, tiny_sweep_toml):
    out = tmp_path / "s"
    store = PointStore(out, "deep_linear")
    with store.lock():
        with pytest.raises(SweepLocked, match=rf"pid {os.getpid()}"):
            dmft.sweep(tiny, out_dir=out, progress=False, batch_size=2)
        (tmp_path / "tiny.toml").write_text(tiny_sweep_toml(SWEEP))
        cmd = [sys.executable, "-m", "dmft.cli", "sweep", str(tmp_path / "tiny.toml"), "--out", str(out)]
        proc = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(out / "points" / ".lock") in lines[0] and f"pid {os.getpid()}" in lines[0]
    assert not list((out / "points").glob("*.nc"))


def test_shards_share_a_folder_but_exclude_a_whole_sweep(tmp_path):
    store = PointStore(tmp_path, "deep_linear")
    with store.lock((0, 2)), store.lock((1, 2)):
        with pytest.raises(SweepLocked, match="shard-0-of-2|shard-1-of-2"):
            with store.lock():
                pass
    with store.lock():
        with pytest.raises(SweepLocked, match=r"\.lock "):
            with store.lock((0, 2)):
                pass
    assert not list((tmp_path / "points").glob(".lock*"))  # released locks leave nothing behind


_HOLD_AND_DIE = textwrap.dedent("""
    import os, signal, sys
    from dmft.sweep import PointStore
    cm = PointStore(sys.argv[1], "deep_linear").lock()
    cm.__enter__()
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_the_lock_of_a_killed_sweep_is_taken_over(tiny, tmp_path, repo_root, capsys):
    out = tmp_path / "s"
    proc = subprocess.run([sys.executable, "-c", _HOLD_AND_DIE, str(out)], cwd=repo_root, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    lock = out / "points" / ".lock"
    dead_pid = int(lock.read_text().split()[0].split("=")[1])
    grid = dmft.sweep(tiny, out_dir=out, progress=False, batch_size=2)
    assert grid.sizes["lr"] == 3
    err = capsys.readouterr().err
    assert f"took over the stale lock {lock} of pid {dead_pid}" in err
    assert not lock.exists()


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_saved_results_honour_the_umask(tmp_path, umask, mode):
    import xarray as xr

    old = os.umask(umask)
    try:
        path = save_dataset(xr.Dataset({"a": ("x", np.arange(3.0))}), tmp_path / "r.nc")
    finally:
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == mode
    assert not list(tmp_path.glob(".*part"))  # no temporary file left behind


def test_a_resumed_sweep_equals_one_run_in_one_go_when_a_lone_point_remains(tiny, tmp_path, interrupt_after):
    """Interrupted after 3 of 6 points (batches of 2), the resumed sweep computes the 3 left as 2 + 1: the lone point
    must run the batched program too, or its bits differ from the uninterrupted sweep's (the Ray resume test failed
    about one run in three for this reason)."""
    whole = dmft.sweep(tiny, progress=False, batch_size=2)
    with pytest.raises(KeyboardInterrupt):
        dmft.sweep(tiny, out_dir=tmp_path, progress=False, batch_size=2, on_point=interrupt_after(3))
    assert len(list((tmp_path / "points").glob("*.nc"))) == 3
    resumed = dmft.sweep(tiny, out_dir=tmp_path, progress=False, batch_size=2)
    assert resumed.equals(whole)
