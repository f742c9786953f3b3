"""JAX's persistent compilation cache for the command line and sweeps: compile once, reuse in every later run.

* Where: ``$DMFT_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/dmft-spectra/jax`` (``~/.cache/dmft-spectra/jax``).
* Off: ``DMFT_NO_CACHE=1`` or ``dmft ... --no-cache``; also left alone when the user already set
  ``jax_compilation_cache_dir`` themselves.
* Concurrent processes (shards, Ray workers, parallel CI jobs): with no size limit JAX writes cache entries with a
  plain ``write_bytes`` (jax 0.10.1, ``jax/_src/lru_cache.py``), so a reader can see half an entry. The cache is
  therefore given a size limit (``DMFT_CACHE_MAX_BYTES``, default 4 GiB), which turns on JAX's LRU mode: every
  read and write then holds a ``filelock.FileLock`` on ``<dir>/.lockfile``, and old entries are evicted.
* Every program is cached (minimum compile time 0): the main job is ~70 small programs that each compile in
  under JAX's default threshold of 1 s, but add up to ~40 s.

Nothing here runs on ``import dmft``: :func:`enable` is called by the CLI's process set-up, by sweeps and by the
Ray workers.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["default_dir", "enable", "enabled_dir", "is_off"]

_DEFAULT_MAX_BYTES = 4 << 30


def is_off() -> bool:
    """Whether ``DMFT_NO_CACHE`` turns the cache off."""
    return os.environ.get("DMFT_NO_CACHE", "").strip().lower() not in ("", "0", "false", "no")


def default_dir() -> Path:
    """The cache folder this process would use (whether or not the cache is on)."""
    if os.environ.get("DMFT_CACHE_DIR"):
        return Path(os.environ["DMFT_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dmft-spectra" / "jax"


def enabled_dir() -> Path | None:
    """The folder of the persistent cache in use in this process (None when off)."""
    import jax

    d = jax.config.jax_compilation_cache_dir
    return Path(d) if d and jax.config.jax_enable_compilation_cache else None


def enable(path: str | Path | None = None, *, force: bool = False) -> Path | None:
    """Turn the persistent compilation cache on (at ``path`` or :func:`default_dir`); returns its folder, or None
    when it stays off (``DMFT_NO_CACHE``, an unwritable folder, ``filelock`` missing). Idempotent: a cache that
    is already configured (by an earlier call or by the user) is kept unless ``force``."""
    if is_off() and path is None:
        return None
    import jax

    current = jax.config.jax_compilation_cache_dir
    if current and not force:
        return Path(current)
    folder = Path(path) if path is not None else default_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):
            return None
        import filelock  # noqa: F401 - needed by JAX's locked (LRU) cache mode
    except (OSError, ImportError):
        return None
    max_bytes = int(os.environ.get("DMFT_CACHE_MAX_BYTES", _DEFAULT_MAX_BYTES))
    jax.config.update("jax_compilation_cache_max_size", max_bytes)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_enable_compilation_cache", True)
    return folder
