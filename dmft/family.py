"""What a model family is: the one contract that the API, the CLI, sweeps, plots, citations and docs go through.

A family is one package ``dmft/families/<name>/`` holding

* ``problem.py`` — the shared problem definition (data, parameters, how a config maps to them); the only module,
  besides :mod:`dmft.scaling`, that theory and twin may both import;
* ``theory.py`` (or private ``_*.py`` modules behind it) — the DMFT / infinite-size solver;
* ``twin.py`` — the finite-width network trained the same way; it never imports the theory (and the theory never
  imports it), so that it stays an independent check;
* ``figures.py`` — the family's standard figures;
* ``__init__.py`` — light (no JAX at import): it defines ``FAMILY``, a :class:`Family`, whose callables import the
  heavy modules on first use.

and it is registered by one line in :mod:`dmft.families`. Adding a family: see the README ("Adding a family").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

    from .config import Config

__all__ = ["Family", "COMMON_KEYS"]

#: Keys that every family accepts (besides ``model.family`` itself).
COMMON_KEYS: tuple[str, ...] = (
    "optim.lr",
    "optim.steps",
    "simulate.seeds",
    "simulate.seed",
    "solver.divergence_threshold",
)


@dataclass(frozen=True)
class Family:
    """A model family: its config keys, its theory and twin, its figures and its papers.

    Attributes:
        name: the value of ``model.family``.
        summary: one line for ``dmft keys`` and the docs.
        keys: dotted keys of the shared sections (``model``, ``data``, ``optim``, ``simulate``, ``solver``) that
            apply to this family, in addition to :data:`COMMON_KEYS`. Any other key set in a file, by ``--set``
            or swept is an error that names the family and the keys that apply.
        section: optional frozen dataclass of family-only keys, read from the TOML table ``[<name>]``; declare
            each field with :func:`dmft.config.key` so that it carries its type, range and meaning.
        solve: ``cfg -> Dataset``, the theory for one config.
        simulate: ``(cfg, progress) -> Dataset``, the finite-width twin (theory's names plus a ``seed`` dim).
        figures: ``(theory | None, twin | None) -> {name: Figure}``, the standard figures of one result.
        solve_batch: optional ``[cfg] -> [Dataset]`` for configs that differ only in vmappable keys (one compile).
        simulate_batch: the same for the twin.
        sweep_figures: optional ``grid -> {name: Figure}`` for a swept result.
        oracles: named closed-form checks (callables) that tests and docs can use.
        papers: arXiv ids of the papers behind the family (see :func:`dmft.api.citation`).
        parameterizations: the values ``model.parameterization`` may take (empty: the key does not apply).
        smoke: overrides that make a config of this family run in seconds (contract tests, ``--quick``).
        check: optional ``cfg -> None`` cross-key rules; raises :class:`dmft.config.ConfigError`.
        long_names: ``{variable: long_name or (long_name, units)}`` for the family's own result variables
            (the shared ones are in :data:`dmft.results.LONG_NAMES`); every variable must end up with one.
    """

    name: str
    summary: str
    keys: tuple[str, ...]
    solve: Callable[[Config], xr.Dataset]
    simulate: Callable[[Config, bool], xr.Dataset]
    figures: Callable[[xr.Dataset | None, xr.Dataset | None], dict[str, Any]]
    section: type | None = None
    solve_batch: Callable[[list[Config]], list[xr.Dataset]] | None = None
    simulate_batch: Callable[[list[Config]], list[xr.Dataset]] | None = None
    sweep_figures: Callable[[xr.Dataset], dict[str, Any]] | None = None
    oracles: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    papers: tuple[str, ...] = ()
    parameterizations: tuple[str, ...] = ()
    smoke: Mapping[str, Any] = field(default_factory=dict)
    check: Callable[[Config], None] | None = None
    long_names: Mapping[str, str | tuple[str, str]] = field(default_factory=dict)

    @property
    def all_keys(self) -> tuple[str, ...]:
        """Every dotted key that applies: ``model.family``, the common keys, the shared ones, the section's."""
        out = ["model.family", *COMMON_KEYS, *self.keys]
        if self.parameterizations and "model.parameterization" not in out:
            out.append("model.parameterization")
        if self.section is not None:
            import dataclasses

            out += [f"{self.name}.{f.name}" for f in dataclasses.fields(self.section)]
        return tuple(dict.fromkeys(out))
