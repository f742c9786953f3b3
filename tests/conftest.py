"""Strict numerics for every test: float64 on, explicit PRNG keys, headless matplotlib."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # see dmft/__init__.py

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)


@pytest.fixture
def key():
    """A fresh explicit PRNG key for each test (fixed, so failures reproduce)."""
    return jax.random.key(20261130)


@pytest.fixture(scope="session")
def repo_root():
    from pathlib import Path

    return Path(__file__).resolve().parents[1]
