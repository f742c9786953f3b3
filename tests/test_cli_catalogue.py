"""The CLI's catalogue commands: `dmft keys`, `dmft configs`, `dmft --version`, configs run by name."""

from __future__ import annotations

import pytest

import dmft
from dmft.cli import main


def test_keys_lists_only_the_family_keys_with_type_default_and_meaning(capsys):
    assert main(["keys", "diagonal_linear"]) == 0
    out = capsys.readouterr().out
    assert "model.init_scale" in out and "diagonal-linear init scale" in out.replace("a: d", "d")
    assert "model.parameterization" not in out and "model.width_ratio" not in out
    assert "default 0.05" in out  # optim.lr


def test_keys_of_every_family_show_where_each_applies(capsys):
    assert main(["keys"]) == 0
    out = capsys.readouterr().out
    assert "[mean_field]" in out and "model.activation" in out


def test_keys_of_unknown_family_is_a_one_line_error(capsys):
    assert main(["keys", "deep_linar"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "did you mean 'deep_linear'" in err


def test_configs_lists_shipped_configs_with_descriptions(capsys):
    assert main(["configs"]) == 0
    out = capsys.readouterr().out
    assert "deep_linear_mup" in out and "sweeps/lr_transfer" in out and "main job" in out


def test_configs_copy(tmp_path, capsys):
    assert main(["configs", "--copy", "mean_field", str(tmp_path)]) == 0
    assert (tmp_path / "mean_field.toml").is_file()
    assert main(["configs", "--copy", "mean_field", str(tmp_path)]) == 2  # never overwrites


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and dmft.__version__ in capsys.readouterr().out


def test_run_by_name(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["run", "deep_linear_mup", "--set", "optim.steps=4", "--set", "solver.outliers=false",
                 "--out", str(out), "--no-figures"]) == 0
    assert (out / "result.nc").is_file()
    assert main(["run", "deep_linear_mupp", "--out", str(out)]) == 2
    assert "did you mean 'deep_linear_mup'" in capsys.readouterr().err
