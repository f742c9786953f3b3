"""Typed, frozen configuration: TOML files → dataclasses, validation, overrides, sweep grids.

A config has the shared sections ``model``, ``data``, ``optim``, ``simulate``, ``solver``, optionally the
family's own section ``[<family>]`` (declared by the family, see :class:`dmft.family.Family`) and an optional
``sweep`` table. Every key is declared once with its type, default and allowed range, and each family declares
which keys apply to it. Anything else — an unknown key, a key of another family (in a file, in ``--set`` or in
``[sweep]``), a value out of range — is an error that names the key, the value and what is allowed (one line,
:class:`ConfigError`, with a "did you mean" for typos). ``dmft keys [FAMILY]`` lists the keys.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ConfigError",
    "Config",
    "ModelConfig",
    "DataConfig",
    "OptimConfig",
    "SimulateConfig",
    "SolverConfig",
    "load_config",
    "config_from_dict",
    "parse_override",
    "key",
    "describe_keys",
    "family_names",
]


def family_names() -> tuple[str, ...]:
    """The registered model families (from :mod:`dmft.families`)."""
    from .families import names

    return names()


def _family(name: str) -> Any:
    from .families import get_family

    return get_family(name)


class ConfigError(ValueError):
    """Bad configuration: the message is one line naming the key, the value and what is allowed."""


# --------------------------------------------------------------------------------------------------------------
# Field declarations. `spec` carries the validation rule of each key.
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    kind: str  # "int" | "float" | "str" | "bool" | "int_list" | "float_list"
    lo: float | None = None  # lower bound
    lo_open: bool = False  # lo excluded
    hi: float | None = None
    hi_open: bool = False
    choices: tuple[str, ...] | None = None
    optional: bool = False  # None allowed
    vmappable: bool = False  # a sweep over this key keeps array shapes (batched under one compile)

    def describe(self) -> str:
        if self.choices is not None:
            allowed = "one of " + ", ".join(repr(c) for c in self.choices)
        else:
            noun = {
                "int": "an integer",
                "float": "a number",
                "str": "a string",
                "bool": "true or false",
                "int_list": "a list of integers",
                "float_list": "a list of numbers",
            }[self.kind]
            bounds = []
            if self.lo is not None:
                bounds.append(("> " if self.lo_open else ">= ") + _fmt(self.lo))
            if self.hi is not None:
                bounds.append(("< " if self.hi_open else "<= ") + _fmt(self.hi))
            allowed = noun + (" " + " and ".join(bounds) if bounds else "")
        if self.optional:
            allowed += " (or omit it)"
        return allowed


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def key(default: Any, kind: str, doc: str, **rule: Any) -> Any:
    """Declare a config key: a dataclass field carrying its type (``kind``: int, float, str, bool, int_list,
    float_list), its meaning and its rule (``lo``, ``lo_open``, ``hi``, ``hi_open``, ``choices``, ``optional``,
    ``vmappable``)."""
    return field(default=default, metadata={"spec": _Spec(kind, **rule), "doc": doc})


_key = key


@dataclass(frozen=True)
class ModelConfig:
    """The network (or matrix) being trained."""

    family: str = _key("deep_linear", "str", "model family (see `dmft keys`)")
    depth: int = _key(2, "int", "L: weight matrices before the readout", lo=1, hi=64)
    width_ratio: float = _key(2.0, "float", "ν = N/D", lo=0, lo_open=True, hi=1e6)
    parameterization: str = _key(
        "mup", "str", "μP fixes γ0; NTK uses γ0/√ν (families with both)", choices=("mup", "ntk"), vmappable=True
    )
    gamma0: float = _key(1.0, "float", "output scale γ0 (μP) or γ̃0 (NTK)", lo=0, lo_open=True, vmappable=True)
    sigma: float = _key(1.0, "float", "σ: init std of hidden-weight entries", lo=0, lo_open=True, vmappable=True)
    sigma_readout: float = _key(1.0, "float", "σ_w: init std of readout entries", lo=0, vmappable=True)
    init_scale: float = _key(1.0, "float", "a: diagonal-linear init scale", lo=0, lo_open=True, vmappable=True)
    form: str = _key(
        "uv", "str", "diagonal_linear: β = u⊙v (uv) or β = u₊² − u₋² (pm)", choices=("uv", "pm")
    )
    rows: int = _key(32, "int", "sgd_sde: rows m of the trained W (n_h of phase_teacher)", lo=1, hi=4096)
    cols: int = _key(16, "int", "sgd_sde: columns n of W (n_f of phase_teacher)", lo=1, hi=4096)
    drift: str = _key(
        "noise", "str", "sgd_sde loss: pure noise (∇L = 0), linear teacher, or the 2509.01349 tanh network",
        choices=("noise", "teacher", "phase_teacher"),
    )
    activation: str = _key(
        "linear", "str", "mean_field: activation φ (linear has a closed-form solver)",
        choices=("linear", "relu", "tanh", "erf"),
    )


@dataclass(frozen=True)
class DataConfig:
    """Teacher–student regression data."""

    alpha: float = _key(2.0, "float", "α = P/D", lo=0, lo_open=True, hi=1e6, vmappable=True)
    noise: float = _key(0.0, "float", "σ_ε: label-noise std", lo=0, vmappable=True)
    teacher_variance: float = _key(1.0, "float", "ρ* = E β*_a²", lo=0, vmappable=True)
    samples: int = _key(4000, "int", "sgd_sde phase_teacher: P, fixed training-set size", lo=1, hi=10_000_000)
    prior: str = _key(
        "gaussian", "str", "diagonal_linear teacher prior: β*_a ~ N(0, ρ*), or Bernoulli–Gaussian (sparse)",
        choices=("gaussian", "sparse"),
    )
    sparsity: float = _key(
        0.2, "float", "diagonal_linear sparse prior: fraction of nonzero teacher entries", lo=0, lo_open=True,
        hi=1, vmappable=True,
    )
    points: int = _key(20, "int", "mean_field: P, number of training points", lo=1, hi=100_000)
    test_points: int = _key(
        0, "int", "mean_field: Q, held-out points whose outputs are predicted (0: test loss of a linear teacher "
        "in closed form where available)", lo=0, hi=100_000,
    )
    input_dim: int = _key(10, "int", "mean_field: D, input dimension (finite)", lo=1, hi=1_000_000)
    teacher: str = _key(
        "linear", "str", "mean_field teacher: y = β*·x/√D + ε (linear), or y = tanh of it (tanh)",
        choices=("linear", "tanh"),
    )
    file: str | None = _key(
        None, "str", "mean_field: .npz file with arrays x_train (P, D), y_train (P,) and optionally x_test, "
        "y_test; replaces the synthetic data", optional=True,
    )
    seed: int = _key(0, "int", "mean_field: PRNG seed of the synthetic data set", lo=0)


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer: full-batch GD, or one-pass SGD when batch_ratio is set."""

    lr: float = _key(0.05, "float", "η: base learning rate", lo=0, lo_open=True, vmappable=True)
    steps: int = _key(40, "int", "T: number of recorded states (t = 0..T-1)", lo=1, hi=100_000)
    batch_ratio: float | None = _key(
        None, "float", "α_B = B/D: one-pass SGD; omit for full-batch GD", lo=0, lo_open=True, optional=True,
        vmappable=True,
    )
    batch_size: int = _key(4, "int", "sgd_sde: B, minibatch size", lo=1, hi=1_000_000)
    grad_noise: float = _key(
        0.0, "float", "sgd_sde: σ_g, std of injected isotropic per-sample gradient noise", lo=0,
        vmappable=True,
    )
    weight_decay: float = _key(0.0, "float", "λ_wd: weight decay", lo=0, vmappable=True)


@dataclass(frozen=True)
class SimulateConfig:
    """Finite-width twin."""

    dim: int = _key(400, "int", "D of the twin", lo=2, hi=1_000_000)
    seeds: int = _key(4, "int", "independent networks (vmapped)", lo=1, hi=10_000)
    width: int = _key(1024, "int", "mean_field: N, hidden width of the twin", lo=1, hi=1_000_000)
    seed: int = _key(0, "int", "base PRNG seed", lo=0)
    spectrum_every: int | None = _key(
        None, "int", "record full spectra every k steps (default: about 5 times per run)", lo=1, optional=True
    )
    record_spectra: bool = _key(True, "bool", "record singular-value spectra of every weight matrix")
    snapshots: tuple[int, ...] | None = _key(
        None, "int_list", "diagonal_linear: steps at which β is recorded for histograms, theory and twin "
        "(default: 5 steps from 0 to T-1)", lo=0, optional=True,
    )


@dataclass(frozen=True)
class SolverConfig:
    """Numerical settings of the theory solvers."""

    divergence_threshold: float = _key(
        1e6, "float", "flag divergence when a loss exceeds this multiple of its initial value", lo=1, lo_open=True
    )
    tol: float = _key(1e-8, "float", "tolerance of the self-consistency residual", lo=0, lo_open=True)
    outliers: bool = _key(False, "bool", "level 2: outlier singular values of every weight matrix over time")
    max_outliers: int = _key(4, "int", "largest number of outliers reported per weight matrix", lo=1, hi=64)
    outlier_every: int | None = _key(
        None, "int", "level 2 is evaluated every k steps, at the last step and at the twin's spectrum steps "
        "(default: every step up to T = 64, else about 64 steps)", lo=1, optional=True,
    )
    sharpness: bool = _key(
        False, "bool", "deep_linear: sharpness from theory — bulk edge and outliers of the stability kernel "
        "K̃ = γ0²N JJᵀ/P at the steps of solver.outlier_every (theory), Lanczos λ_max at every step (twin); "
        "mean_field: λ_max(K(t)/P) of the tangent kernel at every step (theory and twin)",
    )
    kernel: str = _key(
        "train", "str", "deep_linear sharpness: kernel on the training inputs (the stability criterion), on fresh "
        "inputs (a test-set kernel), or both", choices=("train", "fresh", "both"),
    )
    ensemble: int = _key(16, "int", "sgd_sde: SDE ensemble members (vmapped)", lo=1, hi=100_000)
    record_every: int | None = _key(
        None, "int", "sgd_sde: record every k steps, theory and twin (default: about 50 records)", lo=1,
        optional=True,
    )
    level: str = _key(
        "matrix", "str", "sgd_sde: integrate the matrix SDE or the singular-value SDE",
        choices=("matrix", "singular_values"),
    )
    substeps: int = _key(1, "int", "sgd_sde: SDE steps per SGD step (step h = η/substeps)", lo=1, hi=10_000)
    noise_model: str = _key(
        "state", "str", "sgd_sde: gradient-noise variance measured at the current W, or fixed at W(0)",
        choices=("state", "constant"),
    )
    samples: int = _key(
        4000, "int", "diagonal_linear, mean_field: Monte Carlo samples S of the single-site process", lo=16,
        hi=10_000_000,
    )
    seed: int = _key(0, "int", "PRNG seed of the Monte Carlo samples (common random numbers)",
                     lo=0)
    method: str = _key(
        "causal", "str", "diagonal_linear: one-pass causal construction, or damped Picard iteration",
        choices=("causal", "picard"),
    )
    response: str = _key(
        "jvp", "str", "diagonal_linear, mean_field: responses by exact tangents (jvp) or by the Stein estimate",
        choices=("jvp", "stein"),
    )
    replicas: int = _key(
        8, "int", "diagonal_linear: independent replica solves of samples/replicas each, whose spread gives the "
        "Monte Carlo error (0: no error estimate)", lo=0, hi=1000,
    )
    engine: str = _key(
        "auto", "str", "mean_field: closed form (linear φ only) or Monte Carlo single-site solver; auto picks "
        "the closed form when φ is linear", choices=("auto", "closed_form", "monte_carlo"),
    )
    output: str = _key(
        "exact", "str", "mean_field: network output from the exact discrete-time average or the tangent-kernel "
        "update", choices=("exact", "tangent"),
    )
    response_damping: float | None = _key(
        None, "float", "mean_field monte_carlo: mixing of the responses A, B (default: solver.damping)", lo=0,
        lo_open=True, hi=1, optional=True,
    )
    iterations: int = _key(
        200, "int", "diagonal_linear picard, mean_field monte_carlo: maximum number of iterations", lo=1,
        hi=100_000,
    )
    damping: float = _key(
        1.0, "float", "diagonal_linear picard, mean_field monte_carlo: mixing θ of x ← (1 − θ)x + θF(x) (1: plain "
        "iteration, exact "
        "after at most T steps since the map is causal)", lo=0, lo_open=True, hi=1
    )


_SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "data": DataConfig,
    "optim": OptimConfig,
    "simulate": SimulateConfig,
    "solver": SolverConfig,
}


@dataclass(frozen=True)
class Config:
    """A whole run: five shared sections, the family's own section (if it declares one) and a sweep grid.

    ``family_options`` is the family's section (a frozen dataclass instance, or None); read it with
    ``cfg.get("<family>.<key>")`` or ``cfg.options.<key>``. ``sweep`` is a tuple of ``(dotted_key, values)`` pairs
    in the order given in the file.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    simulate: SimulateConfig = field(default_factory=SimulateConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    family_options: Any = None
    sweep: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    # ---- access -------------------------------------------------------------------------------------------
    @property
    def options(self) -> Any:
        """The family's own section (a frozen dataclass), or None when the family declares none."""
        return self.family_options

    def get(self, dotted: str) -> Any:
        section, name = _split(dotted)
        if section in _SECTIONS:
            return getattr(getattr(self, section), name)
        if section == self.model.family and self.family_options is not None:
            return getattr(self.family_options, name)
        raise ConfigError(f"key {dotted!r}: no section [{section}] in a {self.model.family} config")

    def applicable_keys(self) -> tuple[str, ...]:
        """The dotted keys that apply to this config's family."""
        return _family(self.model.family).all_keys

    def to_dict(self, include_sweep: bool = True) -> dict[str, dict[str, Any]]:
        """The keys that apply to the family, by section (what ``load_config`` reads back unchanged)."""
        allowed = set(self.applicable_keys())
        out: dict[str, dict[str, Any]] = {}
        for s in _SECTIONS:
            table = {k: v for k, v in dataclasses.asdict(getattr(self, s)).items() if f"{s}.{k}" in allowed}
            if table:
                out[s] = table
        if self.family_options is not None:
            out[self.model.family] = dataclasses.asdict(self.family_options)
        if include_sweep and self.sweep:
            out["sweep"] = {k: list(v) for k, v in self.sweep}
        return out

    def flat(self) -> dict[str, Any]:
        """All applicable keys as ``{"section.key": value}`` (sweep excluded)."""
        return {f"{s}.{k}": v for s, d in self.to_dict(include_sweep=False).items() for k, v in d.items()}

    def replace(self, overrides: Mapping[str, Any]) -> Config:
        """A new config with dotted (or unambiguous short) keys replaced, validated like a file.

        When ``model.family`` changes, keys of the old family that do not apply to the new one are dropped.
        """
        if not overrides:
            return self
        data = self.to_dict()
        return config_from_dict(_merge_overrides(data, overrides, replacing=True))

    # ---- sweeps -------------------------------------------------------------------------------------------
    @property
    def sweep_axes(self) -> tuple[str, ...]:
        return tuple(k for k, _ in self.sweep)

    def grid(self) -> Iterator[tuple[dict[str, Any], Config]]:
        """Every point of the sweep grid as ``(coordinates, config)`` (sweep removed from each point)."""
        base = dataclasses.replace(self, sweep=())
        keys = [k for k, _ in self.sweep]
        for values in itertools.product(*(v for _, v in self.sweep)):
            coords = dict(zip(keys, values, strict=True))
            yield coords, base.replace(coords)


def _split(dotted: str) -> tuple[str, str]:
    if "." not in dotted:
        raise ConfigError(f"key {dotted!r}: expected 'section.key' with section one of {', '.join(_SECTIONS)}")
    section, name = dotted.split(".", 1)
    return section, name


def _section_fields(section: str, family: str | None = None) -> dict[str, dataclasses.Field]:
    if section in _SECTIONS:
        return {f.name: f for f in dataclasses.fields(_SECTIONS[section])}
    names = family_names()
    if section in names:
        sec = _family(section).section
        return {f.name: f for f in dataclasses.fields(sec)} if sec is not None else {}
    raise KeyError(section)


def _all_declared() -> dict[str, dataclasses.Field]:
    """Every declared key of every section and every family section, as ``{dotted: field}``."""
    out = {f"{s}.{f.name}": f for s, cls in _SECTIONS.items() for f in dataclasses.fields(cls)}
    for name in family_names():
        sec = _family(name).section
        if sec is not None:
            out.update({f"{name}.{f.name}": f for f in dataclasses.fields(sec)})
    return out


def _suggest(word: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _not_applicable(dotted: str, value: Any, family: str, allowed: Sequence[str]) -> ConfigError:
    section = dotted.split(".", 1)[0]
    same = [k.split(".", 1)[1] for k in allowed if k.startswith(section + ".")]
    where = f"keys of [{section}] that apply: {', '.join(same)}" if same else f"no key of [{section}] applies"
    shown = f" = {value!r}" if value is not _MISSING else ""
    return ConfigError(
        f"{dotted}{shown}: does not apply to model.family = {family!r}; {where} (see `dmft keys {family}`)"
    )


_MISSING = object()


def _resolve_key(key: str, family: str | None = None, value: Any = _MISSING) -> tuple[str, str]:
    """Map a dotted or unambiguous short key to (section, name); with ``family``, the key must apply to it."""
    declared = _all_declared()
    allowed = _family(family).all_keys if family is not None else tuple(declared)
    if "." in key:
        section, name = _split(key)
        try:
            fields = _section_fields(section)
        except KeyError:
            sections = [*_SECTIONS, *(family_names() if family is None else [family])]
            raise ConfigError(
                f"key {key!r}: unknown section {section!r}; allowed: {', '.join(sections)}{_suggest(section, sections)}"
            ) from None
        if name not in fields:
            listed = [k for k in fields if f"{section}.{k}" in allowed]
            raise ConfigError(
                f"key {key!r}: unknown key {name!r} in [{section}]{_suggest(name, listed or list(fields))}; "
                f"allowed: {', '.join(listed)}"
            )
        if key not in allowed:
            raise _not_applicable(key, value, family or "", allowed)
        return section, name
    owners = [k for k in allowed if k.split(".", 1)[1] == key]
    if len(owners) == 1:
        return _split(owners[0])
    if len(owners) > 1:
        raise ConfigError(f"key {key!r}: ambiguous short name; use one of {', '.join(owners)}")
    elsewhere = [k for k in declared if k.split(".", 1)[1] == key]
    if elsewhere and family is not None:
        raise _not_applicable(elsewhere[0], value, family, allowed)
    shorts = sorted({k.split(".", 1)[1] for k in allowed})
    raise ConfigError(
        f"key {key!r}: unknown key{_suggest(key, shorts)}; allowed: section.key, e.g. optim.lr (see `dmft keys`)"
    )


def spec_of(dotted: str) -> _Spec:
    section, name = _split(dotted)
    try:
        fields = _section_fields(section)
    except KeyError:
        raise ConfigError(f"key {dotted!r}: unknown section {section!r}") from None
    if name not in fields:
        raise ConfigError(f"key {dotted!r}: unknown key")
    return fields[name].metadata["spec"]


def is_vmappable(dotted: str) -> bool:
    """Whether a sweep over this key keeps array shapes (and can share one compiled solver)."""
    return spec_of(dotted).vmappable


def describe_keys(family: str | None = None) -> list[dict[str, Any]]:
    """The keys of a family (or of all families) as rows: key, type, default, allowed values, meaning, families."""
    names = family_names()
    fams = [family] if family is not None else list(names)
    if family is not None:
        _family(family)
    rows: dict[str, dict[str, Any]] = {}
    for fam in fams:
        for dotted in _family(fam).all_keys:
            f = _all_declared()[dotted]
            spec: _Spec = f.metadata["spec"]
            row = rows.setdefault(dotted, {
                "key": dotted, "type": spec.kind, "default": f.default, "allowed": spec.describe(),
                "vmappable": spec.vmappable, "meaning": f.metadata["doc"], "families": [],
            })
            row["families"].append(fam)
    if family is not None and "model.parameterization" in rows:
        rows["model.parameterization"]["allowed"] = "one of " + ", ".join(
            repr(p) for p in _family(family).parameterizations
        )
    return list(rows.values())


# --------------------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------------------


def _check_value(key: str, value: Any, spec: _Spec) -> Any:
    def fail() -> ConfigError:
        return ConfigError(f"{key} = {value!r}: must be {spec.describe()}")

    if value is None:
        if spec.optional:
            return None
        raise fail()
    if spec.kind == "bool":
        if not isinstance(value, bool):
            raise fail()
        return value
    if spec.kind == "str":
        if not isinstance(value, str) or (spec.choices is not None and value not in spec.choices):
            raise fail()
        return value
    if spec.kind in ("int_list", "float_list"):
        if not isinstance(value, list | tuple):
            raise fail()
        inner = _Spec(spec.kind.split("_")[0], spec.lo, spec.lo_open, spec.hi, spec.hi_open)
        try:
            return tuple(_check_value(key, v, inner) for v in value)
        except ConfigError:
            raise fail() from None
    if isinstance(value, bool):
        raise fail()
    if spec.kind == "int":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            raise fail()
    elif spec.kind == "float":
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise fail()
        value = float(value)
    if spec.lo is not None and (value < spec.lo or (spec.lo_open and value == spec.lo)):
        raise fail()
    if spec.hi is not None and (value > spec.hi or (spec.hi_open and value == spec.hi)):
        raise fail()
    return value


def _build_section(section: str, table: Any, family: str, allowed: Sequence[str]) -> Any:
    if section in _SECTIONS:
        cls = _SECTIONS[section]
    else:
        cls = _family(family).section
    if not isinstance(table, Mapping):
        raise ConfigError(f"[{section}] = {table!r}: must be a table of keys")
    known = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for name, value in table.items():
        if name not in known:
            raise ConfigError(
                f"{section}.{name} = {value!r}: unknown key{_suggest(name, list(known))}; "
                f"allowed in [{section}]: {', '.join(k for k in known if f'{section}.{k}' in allowed)}"
            )
        if f"{section}.{name}" not in allowed:
            raise _not_applicable(f"{section}.{name}", value, family, allowed)
        values[name] = _check_value(f"{section}.{name}", value, known[name].metadata["spec"])
    return cls(**values)


def _build_sweep(table: Any, family: str) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    if not isinstance(table, Mapping):
        raise ConfigError(f"[sweep] = {table!r}: must be a table of lists")
    out = []
    seen = set()
    for key, values in table.items():
        section, name = _resolve_key(key, family, values)
        dotted = f"{section}.{name}"
        if dotted == "model.family":
            raise ConfigError(f"sweep.{key} = {values!r}: the model family cannot be swept (one family per sweep)")
        if dotted in seen:
            raise ConfigError(f"sweep.{key}: {dotted} is swept twice")
        seen.add(dotted)
        if not isinstance(values, list | tuple) or len(values) == 0:
            raise ConfigError(f"sweep.{key} = {values!r}: must be a non-empty list of values")
        spec = spec_of(dotted)
        checked = tuple(_check_value(dotted, v, spec) for v in values)
        if dotted == "model.parameterization":
            _check_parameterizations(family, checked)
        if len(set(checked)) != len(checked):
            raise ConfigError(f"sweep.{key} = {values!r}: values must be distinct")
        out.append((dotted, checked))
    return tuple(out)


def _check_parameterizations(family: str, values: Sequence[str]) -> None:
    allowed = _family(family).parameterizations
    for v in values:
        if v not in allowed:
            raise ConfigError(
                f"model.parameterization = {v!r}: model.family = {family!r} has "
                + ("no μP/NTK choice" if not allowed else "only " + ", ".join(repr(a) for a in allowed))
            )


def _family_of(data: Mapping[str, Any]) -> str:
    model = data.get("model", {})
    family = model.get("family", "deep_linear") if isinstance(model, Mapping) else "deep_linear"
    names = family_names()
    if not isinstance(family, str) or family not in names:
        raise ConfigError(f"model.family = {family!r}: must be one of {', '.join(names)}{_suggest(str(family), names)}")
    return family


def config_from_dict(data: Mapping[str, Any]) -> Config:
    """Validate a nested mapping (as read from TOML) and build a :class:`Config`.

    Every key given must be declared and must apply to the config's ``model.family``.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"config = {data!r}: must be a table")
    family = _family_of(data)
    fam = _family(family)
    allowed = fam.all_keys
    kwargs: dict[str, Any] = {}
    names = family_names()
    for section, table in data.items():
        if section == "sweep":
            kwargs["sweep"] = _build_sweep(table, family)
        elif section in _SECTIONS:
            kwargs[section] = _build_section(section, table, family, allowed)
        elif section == family and fam.section is not None:
            kwargs["family_options"] = _build_section(section, table, family, allowed)
        elif section in names:
            raise ConfigError(
                f"[{section}]: the section of family {section!r} does not apply to model.family = {family!r}"
            )
        else:
            sections = [*_SECTIONS, *([family] if fam.section is not None else []), "sweep"]
            raise ConfigError(
                f"[{section}]: unknown section{_suggest(section, sections)}; allowed: {', '.join(sections)}"
            )
    if fam.section is not None and "family_options" not in kwargs:
        kwargs["family_options"] = fam.section()
    cfg = Config(**kwargs)
    if "model.parameterization" in allowed:
        _check_parameterizations(family, [cfg.model.parameterization])
    if fam.check is not None:
        fam.check(cfg)
    return cfg


def _merge_overrides(
    data: Mapping[str, Any], overrides: Mapping[str, Any], replacing: bool = False
) -> dict[str, Any]:
    """``data`` (nested, as from TOML) with dotted or short override keys merged in (``sweep.<key>`` too).

    When an override changes ``model.family`` and ``replacing`` is set (``Config.replace``: ``data`` holds every
    applicable key, not only the user's), keys of ``data`` that do not apply to the new family are dropped.
    """
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in data.items()}
    new_family = None
    for key, value in overrides.items():
        if key in ("model.family", "family"):
            new_family = value
    if new_family is not None:
        out.setdefault("model", {})["family"] = new_family
        family = _family_of(out)
        if replacing:
            allowed = set(_family(family).all_keys)
            out = {
                s: ({k: v for k, v in t.items() if f"{s}.{k}" in allowed} if s != "sweep" else t)
                for s, t in out.items() if s in _SECTIONS or s == "sweep"
            }
    family = _family_of(out)
    for key, value in overrides.items():
        if key.startswith("sweep."):
            section, name = _resolve_key(key[6:], family, value)
            table = out.setdefault("sweep", {})
            # an override replaces the file's axis in place, however it was spelled
            same = [k for k in table if _resolve_key(k, family) == (section, name)]
            if same:
                out["sweep"] = {(f"{section}.{name}" if k == same[0] else k): (value if k == same[0] else v)
                                for k, v in table.items() if k not in same[1:]}
            else:
                table[f"{section}.{name}"] = value
            continue
        section, name = _resolve_key(key, family, value)
        out.setdefault(section, {})[name] = value
    return out


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``key=value`` (value in TOML syntax; a bare word is read as a string)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. model.width_ratio=4")
    key, raw = (s.strip() for s in text.split("=", 1))
    if not key:
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def load_config(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
) -> Config:
    """Load a TOML config (or the defaults when ``path`` is None) and apply overrides.

    ``overrides`` maps dotted keys to values, or is a list of ``"key=value"`` strings as given to ``--set``. The
    overrides are merged into the file's keys before validation, so a key that does not apply to the family (in
    the file or in an override) is reported, whichever set it.
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            text = p.read_text()
        except FileNotFoundError:
            raise ConfigError(f"config file {str(p)!r}: not found") from None
        except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
            raise ConfigError(f"config file {str(p)!r}: unreadable ({type(e).__name__})") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {str(p)!r}: invalid TOML ({e})") from None
    if overrides:
        if not isinstance(overrides, Mapping):
            overrides = dict(parse_override(o) for o in overrides)
        data = _merge_overrides(data, overrides)
    return config_from_dict(data)
