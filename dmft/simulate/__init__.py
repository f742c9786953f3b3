"""Finite-width twins: the same network, data and optimizer as the theory, trained at finite size (JAX + optax).

Each module ``dmft.simulate.<family>`` provides ``simulate_config(cfg) -> xarray.Dataset`` with the theory's
variable names plus a ``seed`` dimension.
"""
