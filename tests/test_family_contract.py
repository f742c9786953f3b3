"""The one family contract: every registered family is checked against the same schema, theory and twin.

Parametrized over :data:`dmft.families.REGISTRY`, so a new family is checked the moment it is registered.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import dmft
from dmft.families import REGISTRY
from dmft.family import COMMON_KEYS, Family
from dmft.io import config_of
from dmft.results import NOT_DIVERGED, missing_long_names

FAMILIES = list(REGISTRY)


def smoke_config(name: str) -> dmft.Config:
    return dmft.load_config(None, overrides={"model.family": name, **REGISTRY[name].smoke})


@pytest.fixture(scope="module")
def results() -> dict[str, tuple]:
    return {}


def _solve_both(name: str, results: dict) -> tuple:
    if name not in results:
        cfg = smoke_config(name)
        results[name] = (cfg, dmft.solve(cfg), dmft.simulate(cfg))
    return results[name]


def test_registry_entries_are_families() -> None:
    for name, fam in REGISTRY.items():
        assert isinstance(fam, Family) and fam.name == name
        assert fam.papers, name
        for key in fam.keys:  # every declared key exists in the shared sections
            dmft.config.spec_of(key)
        assert not set(fam.keys) & set(COMMON_KEYS), f"{name}: a common key listed again"


@pytest.mark.parametrize("name", FAMILIES)
def test_status_convention(name: str, results: dict) -> None:
    """diverged (bool), divergence_step (int, -1 when not diverged), converged (bool): theory and twin alike."""
    _, theory, twin = _solve_both(name, results)
    for kind, ds in (("theory", theory), ("twin", twin)):
        for var in ("diverged", "divergence_step", "converged"):
            assert var in ds, f"{name} {kind}: no {var}"
        d = np.asarray(ds["diverged"].values)
        k = np.asarray(ds["divergence_step"].values)
        assert d.dtype == bool, f"{name} {kind}: diverged is {d.dtype}"
        assert np.issubdtype(k.dtype, np.integer), f"{name} {kind}: divergence_step is {k.dtype}"
        assert np.all(np.where(d, k >= 0, k == NOT_DIVERGED)), f"{name} {kind}: divergence_step {k} vs {d}"
        assert np.asarray(ds["converged"].values).dtype == bool
        if kind == "twin":
            assert "seed" in ds["diverged"].dims, f"{name}: twin divergence must be per seed"


@pytest.mark.parametrize("name", FAMILIES)
def test_names_and_metadata(name: str, results: dict) -> None:
    """long_name on every variable and coordinate; version, config hash and config in the attributes."""
    cfg, theory, twin = _solve_both(name, results)
    for kind, ds in (("theory", theory), ("twin", twin)):
        assert missing_long_names(ds) == [], f"{name} {kind}: no long_name on {missing_long_names(ds)}"
        assert ds.attrs["dmft_version"] == dmft.__version__
        assert len(ds.attrs["config_hash"]) == 16
        assert config_of(ds) == cfg
        assert "t" in ds.dims and int(ds["t"].values[0]) == 0
    assert theory.attrs["kind"] == "theory" and twin.attrs["kind"] == "simulation"


@pytest.mark.parametrize("name", FAMILIES)
def test_theory_and_twin_share_names(name: str, results: dict) -> None:
    """A quantity that both compute has the same name and the same dims (the twin adds ``seed``)."""
    _, theory, twin = _solve_both(name, results)
    shared = set(theory.data_vars) & set(twin.data_vars)
    assert {"train_loss", "test_loss"} <= shared or "train_loss" in shared, (name, sorted(shared))
    for var in shared:
        twin_dims = tuple(d for d in twin[var].dims if d != "seed")
        assert set(twin_dims) <= set(theory[var].dims) | {"t_spec"}, (name, var, theory[var].dims, twin[var].dims)
        assert theory[var].attrs.get("long_name") == twin[var].attrs.get("long_name"), (name, var)


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_key_is_declared_and_documented(name: str) -> None:
    rows = dmft.config.describe_keys(name)
    keys = {r["key"] for r in rows}
    assert set(REGISTRY[name].all_keys) == keys
    assert all(r["meaning"] for r in rows)


@pytest.mark.parametrize("name", FAMILIES)
def test_keys_of_other_families_are_errors(name: str) -> None:
    """Every key declared by some family but not this one is refused, in a file, in --set and in [sweep]."""
    mine = set(REGISTRY[name].all_keys)
    foreign = sorted({k for f in REGISTRY.values() for k in f.all_keys} - mine)
    foreign = [k for k in foreign if not k.startswith(tuple(f"{n}." for n in REGISTRY))]
    assert foreign, name
    for key in foreign:
        default = dmft.config.spec_of(key)
        value = {"int": 2, "float": 0.5, "str": "x", "bool": True, "int_list": [1], "float_list": [0.5]}[default.kind]
        section, leaf = key.split(".")
        data = {"model": {"family": name}}
        data.setdefault(section, {})[leaf] = value  # same section as family: one table, not two
        with pytest.raises(dmft.ConfigError, match=f"does not apply to model.family = '{name}'"):
            dmft.config.config_from_dict(data)
        with pytest.raises(dmft.ConfigError, match="does not apply"):
            dmft.load_config(None, overrides={"model.family": name, key: value})
        with pytest.raises(dmft.ConfigError, match="does not apply"):
            dmft.config.config_from_dict({"model": {"family": name}, "sweep": {key: [value]}})


def test_config_round_trip_keeps_only_applicable_keys() -> None:
    for name in FAMILIES:
        cfg = smoke_config(name)
        flat = cfg.flat()
        assert set(flat) <= set(REGISTRY[name].all_keys)
        again = dmft.config.config_from_dict(cfg.to_dict())
        assert again == cfg


def test_family_change_by_replace_drops_keys_of_the_old_family() -> None:
    cfg = dmft.load_config(None, overrides={"model.depth": 3})
    mf = cfg.replace({"model.family": "sgd_sde"})
    assert mf.model.family == "sgd_sde" and "model.depth" not in mf.flat()


def test_family_sections_are_dataclasses() -> None:
    for fam in REGISTRY.values():
        if fam.section is not None:
            assert dataclasses.is_dataclass(fam.section)
            fam.section()  # every key has a default
