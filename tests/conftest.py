"""Strict numerics for every test: float64 on, explicit PRNG keys, headless matplotlib, a shared compilation cache."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # see dmft/__init__.py
# One persistent compilation cache for the test session and every CLI subprocess it starts (dmft.sweep.cache):
# a second run of the suite skips most XLA compilation. DMFT_NO_CACHE=1 turns it off.
os.environ.setdefault(
    "DMFT_CACHE_DIR", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".pytest_cache",
                                   "dmft-jax")
)
# Test workers run side by side (pytest -n 2): on a GPU each would otherwise take 75 % of its memory up front.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # spurious cache-load errors of jaxlib 0.10.1 (see dmft/cli.py)

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)

from dmft.sweep import cache as _cache  # noqa: E402

_cache.enable()


@pytest.fixture
def key():
    """A fresh explicit PRNG key for each test (fixed, so failures reproduce)."""
    return jax.random.key(20261130)


@pytest.fixture(scope="session")
def repo_root():
    from pathlib import Path

    return Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def _drop_compiled_programs_near_the_map_cap():
    """After each test file, drop JAX's compiled programs if the process holds more than half of Linux's cap on
    memory mappings (the library's own guard, dmft._jax.release_programs_near_map_limit; the solvers' entry point
    runs it too, but many tests call the array-level solvers directly). Each program keeps its JIT-compiled code in
    mappings (800–2000 for one deep-linear solve); one session of this suite reached the cap of 65 530 and crashed
    in jaxlib."""
    yield
    from dmft._jax import release_programs_near_map_limit

    release_programs_near_map_limit()


@pytest.fixture(autouse=True)
def _close_figures():
    """Close every figure a test opened (matplotlib warns past 20 open figures, and warnings are errors)."""
    yield
    import sys

    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


_TINY_DEEP_LINEAR = """
[model]
family = "deep_linear"
depth = 2
width_ratio = 1.0
gamma0 = 1.0
[data]
alpha = 2.0
noise = 0.1
[optim]
lr = 0.05
steps = 6
[solver]
outliers = false
[sweep]
"""


@pytest.fixture(scope="session")
def tiny_sweep_toml():
    """``tiny_sweep_toml(sweep_lines)``: the TOML text of a seconds-long deep-linear sweep (one place for the sweep
    engine's tests, so they share compiled programs through the cache)."""

    def make(sweep: str) -> str:
        return _TINY_DEEP_LINEAR + sweep.strip() + "\n"

    return make


@pytest.fixture
def interrupt_after():
    """``interrupt_after(n)``: an ``on_point`` callback for ``dmft.sweep`` that raises KeyboardInterrupt (a user's
    Ctrl-C) when the n-th finished point is reported."""

    def make(n: int):
        seen = []

        def on_point(coords, ds):
            seen.append(coords)
            if len(seen) == n:
                raise KeyboardInterrupt

        return on_point

    return make
