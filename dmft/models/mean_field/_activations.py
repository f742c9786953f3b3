"""Activation functions of the mean-field family, by config name (``model.activation``)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

__all__ = ["ACTIVATIONS", "activation"]

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "linear": lambda h: h,
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "erf": jax.scipy.special.erf,
}


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """φ for ``model.activation = name``; derivatives by ``jax.grad`` / ``jax.jvp`` (φ′(0) = 0 for ReLU)."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"model.activation = {name!r}: must be one of {', '.join(ACTIVATIONS)}") from None
