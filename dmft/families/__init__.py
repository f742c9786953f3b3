"""The registry of model families: one entry per family, each a :class:`dmft.family.Family`.

Importing this module is light (no JAX): each family's ``__init__`` defines only its ``FAMILY`` object, whose
callables load the theory, twin and figures on first use. To add a family, write its package (see
:mod:`dmft.family`) and add one line below.
"""

from __future__ import annotations

from ..config import ConfigError
from ..family import Family
from .deep_linear import FAMILY as _deep_linear
from .diagonal_linear import FAMILY as _diagonal_linear
from .extensive_output import FAMILY as _extensive_output
from .mean_field import FAMILY as _mean_field
from .sgd_sde import FAMILY as _sgd_sde

__all__ = ["REGISTRY", "get_family", "names"]

#: name → Family, in the order shown to users.
REGISTRY: dict[str, Family] = {
    f.name: f
    for f in (
        _deep_linear,
        _mean_field,
        _diagonal_linear,
        _sgd_sde,
        _extensive_output,
    )
}


def names() -> tuple[str, ...]:
    """The registered family names."""
    return tuple(REGISTRY)


def get_family(name: str) -> Family:
    """The registered family called ``name`` (a one-line :class:`ConfigError` otherwise)."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        import difflib

        close = difflib.get_close_matches(str(name), list(REGISTRY), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"model.family = {name!r}: must be one of {', '.join(REGISTRY)}{hint}") from None
