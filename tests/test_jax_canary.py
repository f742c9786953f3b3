"""Canary for jax-ml/jax#39103: jax/jaxlib 0.10.2 return wrong results on CPU for a jitted, vmapped mat-vec
followed by a reduction. The library pins jax>=0.10.1,!=0.10.2; this test fails loudly if a bad JAX slips in."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest


@pytest.mark.parametrize(("dtype", "n"), [(jnp.float64, 16_385), (jnp.float32, 32_769)])
def test_vmapped_matvec_then_sum_matches_eager(dtype, n):
    i = jnp.arange(n, dtype=dtype)
    x = jnp.stack((i, jnp.zeros_like(i), jnp.zeros_like(i)), axis=1)
    matrix = jnp.eye(3, dtype=dtype)

    def f(x):
        return jax.vmap(lambda row: jnp.sum((matrix @ row) ** 2))(x)

    eager = np.asarray(f(x))
    jitted = np.asarray(jax.jit(f)(x))
    expected = np.arange(n, dtype=np.float64) ** 2
    np.testing.assert_array_equal(jitted, eager)
    np.testing.assert_allclose(jitted[-1], expected[-1], rtol=0)


def test_installed_jax_is_not_the_bad_release():
    import jaxlib

    assert jax.__version__ != "0.10.2" and jaxlib.__version__ != "0.10.2"


def test_compiled_programs_are_dropped_near_the_memory_map_cap(monkeypatch):
    """Linux caps a process's memory mappings (vm.max_map_count); XLA:CPU keeps each cached program's code in its
    own mappings, and past the cap jaxlib crashed a long test session. The solvers' float64 entry drops compiled
    programs once the process holds more than half the cap, and only then."""
    from dmft import _jax

    use = _jax.memory_map_use()
    if use is None:
        pytest.skip("no /proc (not Linux)")
    f = jax.jit(lambda x: jnp.sin(x) * 3.0)
    f(jnp.ones(5))
    assert f._cache_size() == 1
    assert not _jax.release_programs_near_map_limit()  # this process is far below the cap
    with _jax.float64():
        pass
    assert f._cache_size() == 1
    monkeypatch.setattr(_jax, "memory_map_use", lambda: (use[0], use[0]))  # as if at the cap
    with _jax.float64():
        pass
    assert f._cache_size() == 0
    assert float(f(jnp.ones(5))[0]) == pytest.approx(3 * np.sin(1.0))  # recompiles on demand
