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
