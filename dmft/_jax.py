"""JAX set-up shared by every solver: float64 on, and a check that the installed JAX is not a known-bad one."""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

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


check_jax_version()
