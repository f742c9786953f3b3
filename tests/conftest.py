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


@pytest.fixture(autouse=True)
def _close_figures():
    """Close every figure a test opened (matplotlib warns past 20 open figures, and warnings are errors)."""
    yield
    import sys

    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")
