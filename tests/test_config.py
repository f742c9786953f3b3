"""Config layer: loading, validation with one-line errors, overrides, sweep grids, TOML round trip."""

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dmft
from dmft.config import ConfigError, config_from_dict, is_vmappable, load_config, parse_override
from dmft.io import config_to_toml

SHIPPED = ["configs/deep_linear_mup.toml", "configs/deep_linear_ntk.toml", "configs/sweeps/width_mup_vs_ntk.toml"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_load(repo_root, name):
    cfg = load_config(repo_root / name)
    assert cfg.model.family == "deep_linear"


def test_defaults_and_overrides(repo_root):
    cfg = load_config(repo_root / SHIPPED[0], overrides={"model.width_ratio": 4, "lr": 0.01})
    assert cfg.model.width_ratio == 4.0 and isinstance(cfg.model.width_ratio, float)
    assert cfg.optim.lr == 0.01
    cfg2 = load_config(repo_root / SHIPPED[0], overrides=["model.parameterization=ntk", "optim.steps=7"])
    assert cfg2.model.parameterization == "ntk" and cfg2.optim.steps == 7
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model.depth = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("data", "fragments"),
    [
        ({"model": {"depth": 0}}, ["model.depth", "0", ">= 1"]),
        ({"model": {"width_ratio": -1.0}}, ["model.width_ratio", "-1.0", "> 0"]),
        ({"optim": {"lr": 0}}, ["optim.lr", "0", "> 0"]),
        ({"optim": {"steps": 2.5}}, ["optim.steps", "2.5", "integer"]),
        ({"model": {"depth": "two"}}, ["model.depth", "'two'", "integer"]),
        ({"model": {"parameterization": "sp"}}, ["model.parameterization", "'sp'", "'mup', 'ntk'"]),
        ({"model": {"widht_ratio": 2}}, ["model.widht_ratio", "unknown key", "width_ratio"]),
        ({"modle": {"depth": 2}}, ["[modle]", "unknown section", "model"]),
        ({"data": {"noise": True}}, ["data.noise", "True", "number"]),
        ({"sweep": {"width_ratio": []}}, ["sweep.width_ratio", "non-empty list"]),
        ({"sweep": {"depth": [1, 0]}}, ["model.depth", "0", ">= 1"]),
        ({"sweep": {"nonsense": [1]}}, ["nonsense", "unknown key"]),
        # keys of another family: in a file, in a sweep, and NTK where a family has no μP/NTK choice
        ({"model": {"activation": "relu"}}, ["model.activation", "does not apply", "'deep_linear'", "depth"]),
        ({"model": {"rows": 10}}, ["model.rows", "does not apply", "deep_linear"]),
        ({"sweep": {"width": [1, 2]}}, ["simulate.width", "does not apply", "deep_linear"]),
        ({"sweep": {"activation": ["relu", "tanh"]}}, ["model.activation", "does not apply"]),
        ({"model": {"family": "diagonal_linear", "parameterization": "ntk"}},
         ["model.parameterization", "does not apply", "'diagonal_linear'"]),
        ({"model": {"family": "sgd_sde", "parameterization": "ntk"}}, ["model.parameterization", "does not apply"]),
        ({"model": {"family": "sgd_sde"}, "sweep": {"parameterization": ["mup", "ntk"]}},
         ["model.parameterization", "does not apply", "sgd_sde"]),
        ({"model": {"family": "mean_field"}, "simulate": {"dim": 64}}, ["simulate.dim", "does not apply", "width"]),
        ({"model": {"family": "deep_linar"}}, ["model.family", "'deep_linar'", "did you mean 'deep_linear'"]),
        ({"optim": {"lrr": 0.1}}, ["optim.lrr", "unknown key", "did you mean 'lr'"]),
        ({"model": {"family": "mean_field"}, "sweep": {"family": ["deep_linear"]}}, ["cannot be swept"]),
        ({"model": {"family": "mean_field"}, "diagonal_linear": {"x": 1}}, ["[diagonal_linear]", "does not apply"]),
    ],
)
def test_bad_values_give_one_line_errors(data, fragments):
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)
    msg = str(err.value)
    assert "\n" not in msg
    for frag in fragments:
        assert frag in msg, (frag, msg)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\ndepth = 2")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="unreadable"):
        load_config(tmp_path)


def test_override_parsing():
    assert parse_override("model.width_ratio=4") == ("model.width_ratio", 4)
    assert parse_override("model.parameterization=ntk") == ("model.parameterization", "ntk")
    assert parse_override("sweep.lr=[0.1, 0.2]") == ("sweep.lr", [0.1, 0.2])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("model.depth")


def test_sweep_grid_and_vmappable_axes(repo_root):
    cfg = load_config(repo_root / SHIPPED[2])
    assert cfg.sweep_axes == ("model.width_ratio", "model.parameterization")
    points = list(cfg.grid())
    assert len(points) == 10
    coords, point = points[3]
    assert point.model.width_ratio == coords["model.width_ratio"] and point.sweep == ()
    assert is_vmappable("model.parameterization") and is_vmappable("optim.lr")
    assert not is_vmappable("model.depth") and not is_vmappable("optim.steps")


def test_toml_round_trip(repo_root):
    import tomllib

    cfg = load_config(repo_root / SHIPPED[2], overrides={"optim.batch_ratio": 0.5})
    again = config_from_dict(tomllib.loads(config_to_toml(cfg)))
    assert again == cfg


@settings(max_examples=60, deadline=None)
@given(
    key=st.sampled_from(["model.depth", "model.width_ratio", "optim.lr", "optim.steps", "simulate.dim",
                         "data.alpha", "model.gamma0"]),
    value=st.one_of(st.integers(-10**6, 0), st.floats(max_value=0.0, allow_nan=False), st.text(max_size=5),
                    st.booleans(), st.none()),
)
def test_property_nonpositive_or_mistyped_values_rejected(key, value):
    section, name = key.split(".")
    with pytest.raises(ConfigError) as err:
        config_from_dict({section: {name: value}})
    assert key in str(err.value) and "\n" not in str(err.value)


def test_public_api_is_lazy():
    import subprocess
    import sys

    code = "import sys, dmft; cfg = dmft.load_config(); print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert callable(dmft.solve) and callable(dmft.sweep)


@pytest.mark.parametrize(
    ("path", "override", "fragment"),
    [
        ("configs/deep_linear_mup.toml", "model.activation=relu", "model.activation = 'relu': does not apply"),
        ("configs/mean_field.toml", "simulate.dim=50", "simulate.dim = 50: does not apply to model.family = 'mean_"),
        ("configs/diagonal_linear.toml", "model.parameterization=ntk", "model.parameterization = 'ntk': does not"),
        ("configs/sgd_sde.toml", "model.depth=3", "model.depth = 3: does not apply"),
        ("configs/deep_linear_mup.toml", "sweep.width=[1, 2]", "simulate.width = [1, 2]: does not apply"),
    ],
)
def test_overrides_of_another_family_are_errors(repo_root, path, override, fragment):
    """`--set` and `--set sweep.KEY=[...]` are checked against the family like a file (they were accepted)."""
    with pytest.raises(ConfigError) as err:
        load_config(repo_root / path, overrides=[override])
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_every_shipped_config_is_valid_for_its_family(repo_root):
    from dmft.shipped import list_configs

    shipped = list_configs()
    assert len(shipped) >= 17
    for name, path in shipped.items():
        cfg = load_config(path)
        assert set(cfg.flat()) <= set(cfg.applicable_keys()), name


def test_configs_by_name_and_copy(tmp_path):
    from dmft.shipped import copy_config, find_config

    assert find_config("deep_linear_mup").name == "deep_linear_mup.toml"
    assert find_config("lr_transfer").parent.name == "sweeps"
    with pytest.raises(ConfigError, match="did you mean 'deep_linear_mup'"):
        find_config("deep_linear_mupp")
    out = copy_config("deep_linear_mup", tmp_path)
    assert out.read_text() == find_config("deep_linear_mup").read_text()
    with pytest.raises(ConfigError, match="not overwritten"):
        copy_config("deep_linear_mup", tmp_path)


def test_simulate_is_a_function_not_a_rebound_module():
    import types

    assert isinstance(dmft.simulate, types.FunctionType)
    assert dmft.simulate is dmft.api.simulate
