"""Many devices in one process: a sweep's vmapped batches spread over 2 CPU host devices give the numbers of one
device, and every device is used (XLA_FLAGS=--xla_force_host_platform_device_count=2, in a subprocess; each CPU
device compiles its own programs, so every extra device adds a full set of compilations to the suite)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from dmft.sweep.sharding import pad_size, split

_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax
    import numpy as np
    import dmft
    from dmft.sweep import cache, executors
    cache.enable()
    assert len(jax.local_devices()) == 2
    used = []
    real = executors._raw
    def spy(family, kind, cfgs):
        used.append((str(jax.config.jax_default_device), len(cfgs)))
        return real(family, kind, cfgs)
    executors._raw = spy
    cfg = dmft.load_config(sys.argv[1])
    one = dmft.sweep(cfg, progress=False, devices=1, batch_size=2)
    calls_one = list(used); used.clear()
    two = dmft.sweep(cfg, progress=False, batch_size=2)
    diff = float(np.nanmax(np.abs(one.test_loss.values - two.test_loss.values) / np.abs(one.test_loss.values)))
    print(json.dumps({"one": calls_one, "two": used, "rel_diff": diff,
                      "equal": bool(one.equals(two))}))
""")

SWEEP = """
lr = [0.01, 0.02, 0.05, 0.1]
gamma0 = [0.5, 2.0]
"""  # on the shared tiny deep-linear config (conftest.tiny_sweep_toml)


def test_two_host_devices_match_one(repo_root, tmp_path, tiny_sweep_toml):
    path = tmp_path / "grid.toml"
    path.write_text(tiny_sweep_toml(SWEEP))
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", _SCRIPT, str(path)], capture_output=True, text=True, cwd=repo_root,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    # one device: 8 points in chunks of 2; two devices: two chunks of 4, one sub-batch of 2 per device
    assert len(got["one"]) == 4 and {n for _, n in got["one"]} == {2}
    assert len(got["two"]) == 4 and len({d for d, _ in got["two"]}) == 2 and {n for _, n in got["two"]} == {2}
    assert got["equal"] and got["rel_diff"] == 0.0  # the same program per point: bit for bit


def test_split_and_padding():
    assert split(list(range(7)), 4) == [[0, 1], [2, 3], [4, 5], [6]]
    assert split([1], 4) == [[1]]
    assert [pad_size(n, 16) for n in (1, 2, 3, 5, 9, 16)] == [2, 2, 4, 8, 16, 16]
    assert pad_size(1, 1) == 1 and pad_size(0, 4) == 0  # a lone point runs batched only when batching is allowed
    assert pad_size(5, 6) == 6 and pad_size(7, 4) == 7


def test_first_sub_batch_alone_runs_before_the_others():
    """``first_alone``: the first device's sub-batch finishes before any other starts (it compiles the program that
    the others then load from the persistent cache); without it all start together. Results keep their order."""
    import threading
    import time

    import jax

    from dmft.sweep.sharding import run_on_devices

    dev = jax.local_devices()[0]
    for first_alone in (True, False):
        log, lock = [], threading.Lock()
        barrier = threading.Barrier(3, timeout=2)  # the three later sub-batches meet here when run together

        def run(cfgs, log=log, lock=lock, barrier=barrier):
            with lock:
                log.append(("start", cfgs[0]))
            if cfgs[0] != 0:
                barrier.wait()
            time.sleep(0.05)
            with lock:
                log.append(("end", cfgs[0]))
            return [c * 10 for c in cfgs]

        out = run_on_devices(run, list(range(8)), [dev] * 4, batch_size=2, first_alone=first_alone)
        assert out == [c * 10 for c in range(8)]
        first_end = log.index(("end", 0))
        others_start = min(i for i, (what, c) in enumerate(log) if what == "start" and c != 0)
        assert (first_end < others_start) == first_alone, log
