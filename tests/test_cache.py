"""The persistent compilation cache: on for the command line (per-user folder, DMFT_CACHE_DIR, DMFT_NO_CACHE,
--no-cache), never on `import dmft`, reused by later runs, safe for concurrent processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from dmft.sweep import cache

_FLAGS = textwrap.dedent("""
    import json, sys
    {setup}
    import jax
    print(json.dumps({{"dir": jax.config.jax_compilation_cache_dir,
                       "max_size": jax.config.jax_compilation_cache_max_size}}))
""")


def _run_py(code: str, cwd: Path, **env: str) -> dict:
    full = {**os.environ, **env}
    for k in [k for k, v in env.items() if v is None]:
        full.pop(k)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=full,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_the_library_leaves_the_cache_off(repo_root):
    setup = "import dmft, dmft.api, dmft.sweep, dmft.cli, dmft.families"
    got = _run_py(_FLAGS.format(setup=setup), repo_root)
    assert got["dir"] is None and got["max_size"] == -1


def test_cli_setup_turns_it_on_in_a_per_user_folder(repo_root, tmp_path):
    setup = "from dmft.cli import _process_setup; _process_setup()"
    got = _run_py(_FLAGS.format(setup=setup), repo_root, DMFT_CACHE_DIR=None, XDG_CACHE_HOME=str(tmp_path / "xdg"))
    assert got["dir"] == str(tmp_path / "xdg" / "dmft-spectra" / "jax")
    assert got["max_size"] > 0  # LRU mode: reads and writes hold a file lock (concurrent processes)
    got = _run_py(_FLAGS.format(setup=setup), repo_root, DMFT_CACHE_DIR=str(tmp_path / "mine"))
    assert got["dir"] == str(tmp_path / "mine")
    for env, flag in (({"DMFT_NO_CACHE": "1"}, ""), ({}, "no_cache=True")):
        setup = f"from dmft.cli import _process_setup; _process_setup({flag})"
        got = _run_py(_FLAGS.format(setup=setup), repo_root, DMFT_CACHE_DIR=str(tmp_path / "off"), **env)
        assert got["dir"] is None
    assert not (tmp_path / "off").exists()


def test_default_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("DMFT_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache.default_dir() == tmp_path / "dmft-spectra" / "jax"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache.default_dir() == Path.home() / ".cache" / "dmft-spectra" / "jax"
    monkeypatch.setenv("DMFT_CACHE_DIR", str(tmp_path / "x"))
    assert cache.default_dir() == tmp_path / "x"


_WORKER = textwrap.dedent("""
    import sys, warnings
    warnings.simplefilter("error")
    import jax, jax.numpy as jnp
    jax.config.update("jax_raise_persistent_cache_errors", True)
    from dmft.sweep import cache
    assert cache.enable(sys.argv[1]) is not None
    total = 0.0
    for k in range(6):
        f = jax.jit(lambda x, k=k: jnp.cumsum(jnp.sin(x) * (k + 1)) @ jnp.cos(x))
        total += float(f(jnp.linspace(0, 1, 64 + k)))
    print(repr(total))
""")


def test_concurrent_processes_share_one_cache(repo_root, tmp_path):
    """Three processes compile and read the same programs at once (cold, then warm); with cache errors raised
    and warnings as errors, every one finishes with the same numbers."""
    folder = tmp_path / "jax"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    for _ in range(2):
        procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(folder)], cwd=repo_root, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
        outs = [p.communicate(timeout=300) for p in procs]
        assert all(p.returncode == 0 for p in procs), [e[-1500:] for _, e in outs]
        assert len({o.strip() for o, _ in outs}) == 1
    entries = [p for p in folder.iterdir() if p.name.endswith("-cache")]
    assert len(entries) >= 6
