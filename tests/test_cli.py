"""The `dmft` command end to end: run / simulate / compare / plot / sweep (with resume), errors, no overwrite."""

import subprocess
import sys

import numpy as np
import pytest

import dmft
from dmft import api
from dmft.cli import main
from dmft.io import config_of, load_dataset

SMALL = ["--set", "optim.steps=12", "--set", "simulate.dim=60", "--set", "simulate.seeds=2"]


def test_run_writes_result_and_figure_and_keeps_previous(repo_root, tmp_path, capsys):
    cfg = str(repo_root / "configs/deep_linear_mup.toml")
    assert main(["run", cfg, "--out", str(tmp_path), *SMALL]) == 0
    out = capsys.readouterr().out
    assert "final test_loss" in out and "wrote" in out
    ds = load_dataset(tmp_path / "result.nc")
    assert ds.sizes["t"] == 12 and "train_loss" in ds and "test_loss" in ds
    assert config_of(ds).optim.steps == 12 and ds.attrs["model.parameterization"] == "mup"
    assert (tmp_path / "losses.png").stat().st_size > 1000
    first = (tmp_path / "result.nc").read_bytes()
    assert main(["run", cfg, "--out", str(tmp_path), *SMALL, "--set", "optim.lr=0.04"]) == 0
    kept = [p for p in tmp_path.glob("result-*.nc")]
    assert len(kept) == 1 and kept[0].read_bytes() == first  # the earlier result is kept, not overwritten


def test_compare_and_plot_round_trip(repo_root, tmp_path):
    cfg = str(repo_root / "configs/deep_linear_mup.toml")
    assert main(["compare", cfg, "--out", str(tmp_path), *SMALL]) == 0
    ds = load_dataset(tmp_path / "result.nc")
    assert "test_loss" in ds and "sim_test_loss" in ds and ds.sizes["seed"] == 2
    assert main(["plot", str(tmp_path / "result.nc"), "--out", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "losses.png").exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["run", "configs/deep_linear_mup.toml", "--set", "model.depth=0"], "model.depth = 0"),
        (["run", "configs/deep_linear_mup.toml", "--set", "model.widht=1"], "unknown key"),
        (["run", "configs/nope.toml"], "not found"),
        (["sweep", "configs/deep_linear_mup.toml"], "no [sweep] table"),
        (["plot", "missing.nc"], "not found"),
        (["run", "configs/deep_linear_mup.toml", "--set", "model.family=nonsense"], "model.family"),
    ],
)
def test_bad_input_exits_nonzero_with_one_line(repo_root, tmp_path, args, fragment):
    proc = subprocess.run([sys.executable, "-m", "dmft.cli", *args, "--out", str(tmp_path / "o")]
                          if args[0] != "plot" else [sys.executable, "-m", "dmft.cli", *args],
                          cwd=repo_root, capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], proc.stderr
    assert not (tmp_path / "o" / "result.nc").exists()


def test_sweep_batches_and_resumes_after_interruption(repo_root, tmp_path, monkeypatch):
    cfg = dmft.load_config(repo_root / "configs/sweeps/width_mup_vs_ntk.toml",
                           overrides={"optim.steps": 10, "sweep.width_ratio": [0.5, 1, 2]})
    calls = []

    def interrupt_after_two(coords, ds):
        calls.append(coords)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        api.sweep(cfg, out_dir=tmp_path, progress=False, on_point=interrupt_after_two)
    assert len(list((tmp_path / "points").glob("*.nc"))) == 2

    from dmft.families.deep_linear import theory as deep_linear

    solved = []
    real = deep_linear.solve_batch
    monkeypatch.setattr(deep_linear, "solve_batch", lambda cfgs: solved.extend(cfgs) or real(cfgs))
    grid = api.sweep(cfg, out_dir=tmp_path, progress=False)
    assert len(solved) == 4  # only the 4 unfinished points were computed, in one vmapped batch
    assert grid.test_loss.dims == ("width_ratio", "parameterization", "t")
    assert list(grid.parameterization.values) == ["mup", "ntk"]
    for nu in (0.5, 2):
        single = api.solve(cfg.replace({"model.width_ratio": nu, "model.parameterization": "ntk"}))
        np.testing.assert_allclose(grid.test_loss.sel(width_ratio=nu, parameterization="ntk"), single.test_loss,
                                   rtol=1e-12)


def test_sweep_cli_writes_grid(repo_root, tmp_path):
    cfg = str(repo_root / "configs/sweeps/width_mup_vs_ntk.toml")
    assert main(["sweep", cfg, "--out", str(tmp_path), "--set", "optim.steps=10",
                 "--set", "sweep.width_ratio=[1, 4]"]) == 0
    grid = load_dataset(tmp_path / "result.nc")
    assert grid.sizes["width_ratio"] == 2 and grid.sizes["parameterization"] == 2
    assert any(p.suffix == ".png" for p in tmp_path.iterdir())
