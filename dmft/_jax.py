"""JAX set-up shared by every solver: a float64 context, a float64 check, and a refusal of known-bad JAX.

Importing :mod:`dmft` (or any of its modules) changes no JAX flag and no environment variable of the user's
process. The config-level API (:func:`dmft.solve`, :func:`dmft.simulate`, :func:`dmft.sweep`) runs inside
:func:`float64`; the array-level solvers call :func:`require_x64`, which tells the user in one line how to turn
float64 on when it is off.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import jax

__all__ = ["float64", "require_x64", "check_jax_version", "memory_map_use", "release_programs_near_map_limit"]

# jax/jaxlib 0.10.2 silently miscompile a vmapped mat-vec followed by a reduction on CPU (jax-ml/jax#39103).
_BAD_JAX = {"0.10.2"}


def check_jax_version() -> None:
    import jaxlib

    bad = {jax.__version__, jaxlib.__version__} & _BAD_JAX
    if bad:
        raise RuntimeError(
            f"jax/jaxlib {', '.join(sorted(bad))} returns wrong results on CPU (jax-ml/jax#39103); "
            "install jax>=0.10.1,!=0.10.2"
        )


def memory_map_use() -> tuple[int, int] | None:
    """(memory mappings this process holds, the kernel's cap ``vm.max_map_count``); None off Linux."""
    try:
        with open("/proc/self/maps", "rb") as fh:
            used = fh.read().count(b"\n")
        with open("/proc/sys/vm/max_map_count") as fh:
            cap = int(fh.read())
    except (OSError, ValueError):
        return None
    return used, cap


def release_programs_near_map_limit(fraction: float = 0.5) -> bool:
    """Drop JAX's compiled programs (``jax.clear_caches()``) when this process holds more than ``fraction`` of the
    memory mappings Linux allows it; returns whether it did.

    Every program XLA:CPU compiles keeps its JIT-compiled code in its own mappings for as long as JAX caches the
    program: 3 for a tiny program, 800–2000 for one deep-linear solve (measured, jaxlib 0.10.1). Past the cap
    (``vm.max_map_count``, 65530 by default) the next mapping fails and jaxlib crashes the process (a segfault or
    abort, seen here while writing the persistent compilation cache after ~65 000 mappings of one long test
    session). Programs dropped here recompile, or reload from the persistent cache, when next called.
    """
    use = memory_map_use()
    if use is None or use[0] <= fraction * use[1]:
        return False
    import gc

    jax.clear_caches()
    gc.collect()
    return True


_lock = threading.Lock()
_depth = 0
_previous = False


def _leave() -> None:
    global _depth
    with _lock:
        _depth -= 1
        if _depth == 0:
            jax.config.update("jax_enable_x64", _previous)


@contextlib.contextmanager
def float64() -> Iterator[None]:
    """Run the enclosed solver work in float64, restoring the user's setting afterwards.

    Unless the user set ``OPENBLAS_NUM_THREADS``, BLAS/LAPACK libraries are also limited to one thread for the
    duration (threadpoolctl), then restored: jaxlib's CPU LAPACK kernels run many small factorizations (level-2 and
    kernel root finding, twin spectra), and OpenBLAS threads competing with XLA's own pool made them 100–700× slower
    on a 2-core machine (a 192×192 slogdet: 0.27 s against 0.4 ms).

    On the outermost entry, compiled programs are dropped if the process is near Linux's cap on memory mappings
    (:func:`release_programs_near_map_limit`).
    """
    import os

    with contextlib.ExitStack() as stack:
        # The process-wide flag, not the thread-local ``jax.enable_x64`` context: host callbacks (LAPACK through
        # NumPy) run on XLA's threads, where a thread-local setting is not seen and float64 results were refused.
        # The user's value is restored on exit.
        # Nested and concurrent solves (sweep sub-batches run on several threads) share one entry count: the
        # first entry turns float64 on, the last exit restores the user's value.
        global _depth, _previous
        with _lock:
            if _depth == 0:
                release_programs_near_map_limit()  # no solve is running here: safe to drop compiled programs
                _previous = bool(jax.config.jax_enable_x64)
                jax.config.update("jax_enable_x64", True)
            _depth += 1
        stack.callback(_leave)
        if "OPENBLAS_NUM_THREADS" not in os.environ:
            kmp = os.environ.get("KMP_DUPLICATE_LIB_OK")
            from threadpoolctl import threadpool_limits

            if kmp is None:  # threadpoolctl sets this on import; leave the user's environment as it was
                os.environ.pop("KMP_DUPLICATE_LIB_OK", None)
            stack.enter_context(threadpool_limits(1, user_api="blas"))
        yield


def require_x64(where: str) -> None:
    """Raise a one-line error if float64 is off (the solvers are float64 by design)."""
    if not jax.config.jax_enable_x64:
        raise RuntimeError(
            f"{where} needs float64: call jax.config.update('jax_enable_x64', True) before using the array-level "
            "solvers (dmft.solve / dmft.simulate / dmft.sweep turn it on for their own work)"
        )


check_jax_version()
