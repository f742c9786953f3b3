"""Many devices in one process: a sweep's vmapped batches spread over 4 CPU host devices give the numbers of one
device, and every device is used (XLA_FLAGS=--xla_force_host_platform_device_count=4, in a subprocess)."""

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
    assert len(jax.local_devices()) == 4
    used = []
    real = executors._raw
    def spy(family, kind, cfgs):
        used.append((str(jax.config.jax_default_device), len(cfgs)))
        return real(family, kind, cfgs)
    executors._raw = spy
    cfg = dmft.load_config(sys.argv[1])
    one = dmft.sweep(cfg, progress=False, devices=1, batch_size=2)
    calls_one = list(used); used.clear()
    four = dmft.sweep(cfg, progress=False, batch_size=2)
    diff = float(np.nanmax(np.abs(one.test_loss.values - four.test_loss.values) / np.abs(one.test_loss.values)))
    print(json.dumps({"one": calls_one, "four": used, "rel_diff": diff,
                      "equal": bool(one.equals(four))}))
""")

SWEEP = """
lr = [0.01, 0.02, 0.05, 0.1]
gamma0 = [0.5, 2.0]
"""  # on the shared tiny deep-linear config (conftest.tiny_sweep_toml)


def test_four_host_devices_match_one(repo_root, tmp_path, tiny_sweep_toml):
    path = tmp_path / "grid.toml"
    path.write_text(tiny_sweep_toml(SWEEP))
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", _SCRIPT, str(path)], capture_output=True, text=True, cwd=repo_root,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    # one device: 8 points in chunks of 2; four devices: one chunk of 8, one sub-batch of 2 per device
    assert len(got["one"]) == 4 and {n for _, n in got["one"]} == {2}
    assert len(got["four"]) == 4 and len({d for d, _ in got["four"]}) == 4
    assert got["equal"] and got["rel_diff"] == 0.0  # the same program per point: bit for bit


def test_split_and_padding():
    assert split(list(range(7)), 4) == [[0, 1], [2, 3], [4, 5], [6]]
    assert split([1], 4) == [[1]]
    assert [pad_size(n, 16) for n in (1, 2, 3, 5, 9, 16)] == [2, 2, 4, 8, 16, 16]
    assert pad_size(1, 1) == 1 and pad_size(0, 4) == 0  # a lone point runs batched only when batching is allowed
    assert pad_size(5, 6) == 6 and pad_size(7, 4) == 7
