"""The `dmft` command says what happened: --out checked before computing, interruptions, per-point sweep status,
the theory–twin gap of `dmft compare`, a notice for an empty config (issue 11, items 2 and 4)."""

import os

import numpy as np
import pytest

from dmft import api, cli
from dmft.cli import main
from dmft.io import load_dataset

# one horizon (8 steps) everywhere, so that the solver compiles once for the whole module
SMALL = ["--set", "optim.steps=8", "--set", "simulate.dim=32", "--set", "simulate.seeds=3"]


@pytest.fixture
def cfg_path(repo_root):
    return str(repo_root / "configs/deep_linear_mup.toml")


SWEEP = """[model]
family = "deep_linear"
depth = 2
gamma0 = 3.0
sigma = 0.6

[data]
alpha = 2.0
noise = 0.1

[optim]
lr = 0.05
steps = {steps}

[sweep]
width_ratio = {widths}
parameterization = ["mup", "ntk"]
{extra}"""


def _sweep_config(tmp_path, steps=8, widths="[1, 2]", extra=""):
    path = tmp_path / "sweep.toml"
    path.write_text(SWEEP.format(steps=steps, widths=widths, extra=extra))
    return str(path)


@pytest.fixture
def no_compute(monkeypatch):
    """Any solve or twin run fails the test: the error must come before computing."""

    def boom(*a, **k):
        raise AssertionError("computed before checking --out")

    for name in ("solve", "simulate", "compare", "sweep"):
        monkeypatch.setattr(api, name, boom)


def _one_line(err: str) -> str:
    """The one message line of stderr (progress bars aside)."""
    lines = [ln for ln in err.replace("\r", "\n").splitlines() if ln.strip() and "pt/s]" not in ln
             and "it/s]" not in ln and "s/pt]" not in ln and "s/it]" not in ln]
    assert len(lines) == 1, err
    return lines[0]


# --------------------------------------------------------------------------------------------------------------
# --out is checked before any computation
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "compare", "sweep"])
def test_out_under_a_file_is_refused_before_computing(cfg_path, tmp_path, capsys, no_compute, command):
    blocker = tmp_path / "somefile"
    blocker.write_text("not a folder")
    cfg = cfg_path if command != "sweep" else _sweep_config(tmp_path)
    assert main([command, cfg, "--out", str(blocker / "sub"), *SMALL]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"dmft {command}: error: --out") and "is a file, not a folder" in line


def test_read_only_out_is_refused_before_computing(cfg_path, tmp_path, capsys, no_compute, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.geteuid() == 0 or os.access(ro, os.W_OK):
            # root ignores permission bits: stand in for a read-only mount at the probe write instead
            import tempfile

            def refuse(*a, **k):
                raise PermissionError(13, "Permission denied")

            monkeypatch.setattr(tempfile, "mkstemp", refuse)
        assert main(["run", cfg_path, "--out", str(ro / "out"), *SMALL]) == 2
    finally:
        ro.chmod(0o700)
    line = _one_line(capsys.readouterr().err)
    assert "--out" in line and "not writable (Permission denied)" in line


def test_out_without_free_space_is_refused(cfg_path, tmp_path, capsys, no_compute, monkeypatch):
    monkeypatch.setattr(cli, "_free_bytes", lambda path: 3 * 2**20)
    assert main(["run", cfg_path, "--out", str(tmp_path / "o"), *SMALL]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "only 3.0 MB free" in line and "50 MB" in line
    assert cli._free_bytes is not None and cli.MIN_FREE_BYTES >= 50 * 2**20


def test_plot_checks_out_too(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "f"
    blocker.write_text("x")
    res = tmp_path / "r.nc"
    res.write_text("x")
    assert main(["plot", str(res), "--out", str(blocker / "sub")]) == 2
    assert "unreadable" in _one_line(capsys.readouterr().err)  # the result is read first, then --out checked


# --------------------------------------------------------------------------------------------------------------
# Interruptions
# --------------------------------------------------------------------------------------------------------------


def test_interrupted_run_does_not_mention_sweep_points(cfg_path, tmp_path, capsys, monkeypatch):
    def interrupted(cfg):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "solve", interrupted)
    assert main(["run", cfg_path, "--out", str(tmp_path / "o"), *SMALL]) == 130
    line = _one_line(capsys.readouterr().err)
    assert "sweep" not in line and "nothing was written" in line
    assert not (tmp_path / "o" / "result.nc").exists()


def test_interrupted_sweep_says_how_many_points_are_kept(tmp_path, capsys, monkeypatch):
    import xarray as xr

    cfg = _sweep_config(tmp_path, widths="[1, 2]")
    calls = []

    def second_group_interrupted(family, kind, configs):  # the first group "finishes" at once, the second is cut
        calls.append(len(configs))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return [xr.Dataset({"test_loss": ("t", np.ones(3))}) for _ in configs]

    from dmft.sweep import executors

    monkeypatch.setattr(executors, "_raw", second_group_interrupted)
    assert main(["sweep", cfg, "--out", str(tmp_path), "--no-figures"]) == 130
    line = _one_line(capsys.readouterr().err)
    n = len(list((tmp_path / "points").glob("*.nc")))
    assert n == calls[0] == 2
    assert f"{n} finished sweep points kept in {tmp_path / 'points'}" in line and "resume" in line


# --------------------------------------------------------------------------------------------------------------
# Sweep summary: per-point status by coordinates
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:deep_linear DMFT diverged:RuntimeWarning")
def test_sweep_summary_names_the_diverged_points(tmp_path, capsys):
    cfg = _sweep_config(tmp_path, steps=8, widths="[1]", extra="lr = [0.05, 3.0]\n")
    assert main(["sweep", cfg, "--out", str(tmp_path), "--no-figures"]) == 0
    out = capsys.readouterr().out
    grid = load_dataset(tmp_path / "result.nc")
    lines = out.splitlines()
    assert "4 points" in lines[0] and "diverged 2" in lines[0], out
    for p in ("mup", "ntk"):
        for lr in (0.05, 3.0):
            point = grid.sel(width_ratio=1.0, parameterization=p, lr=lr)
            [line] = [ln for ln in lines if f"lr={lr}" in ln and f"parameterization={p}" in ln]
            if bool(point.diverged):
                assert f"diverged at step {int(point.divergence_step)}" in line, line
            else:
                assert ": converged (final train_loss" in line, line
                assert f"test_loss {float(point.test_loss.isel(t=-1)):.4g}" in line
    assert bool(grid.diverged.sel(lr=3.0).all()) and not bool(grid.diverged.sel(lr=0.05).any())
    assert "DIVERGED" not in out  # no more one flag for the whole grid


def test_sweep_summary_of_a_large_grid_lists_only_flagged_points():
    import xarray as xr

    lr = np.array([0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64])
    nu = np.array([0.5, 1, 2, 4, 8])
    div = np.zeros((5, 7), bool)
    div[:, -1] = True
    div[4, -2] = True
    step = np.where(div, 3, -1)
    conv = np.ones((5, 7), bool)
    conv[0, 0] = False
    ds = xr.Dataset({"diverged": (("width_ratio", "lr"), div), "divergence_step": (("width_ratio", "lr"), step),
                     "converged": (("width_ratio", "lr"), conv)}, coords={"width_ratio": nu, "lr": lr})
    ds.attrs["sweep_axes"] = "model.width_ratio,optim.lr"
    text = cli._sweep_summary(ds, "sweep")
    lines = text.splitlines()
    assert lines[0] == "sweep: 35 points; diverged 6, not converged 1 (flagged points:)"
    assert len(lines) == 8
    assert "  width_ratio=8.0, lr=0.32: diverged at step 3" in lines
    assert "  width_ratio=0.5, lr=0.01: not converged" in lines


# --------------------------------------------------------------------------------------------------------------
# compare: the theory–twin gap in the summary and in the figure
# --------------------------------------------------------------------------------------------------------------


def test_compare_prints_and_draws_the_gap(cfg_path, tmp_path, capsys):
    assert main(["compare", cfg_path, "--out", str(tmp_path), *SMALL, "--set", "solver.outliers=false",
                 "--set", "simulate.record_spectra=false", "--no-figures"]) == 0
    out = capsys.readouterr().out
    ds = load_dataset(tmp_path / "result.nc")
    for name in ("train_loss", "test_loss"):
        th = ds[name].values
        runs = ds[f"sim_{name}"].transpose("seed", "t").values
        m = runs.mean(axis=0)
        rel = (th - m) / m
        rms, final = np.sqrt(np.mean(rel**2)), rel[-1]
        se = runs[:, -1].std(ddof=1) / np.sqrt(runs.shape[0]) / m[-1]
        np.testing.assert_allclose([ds.attrs[f"gap_{name}_{k}"] for k in ("rms", "final", "se")], [rms, final, se],
                                   rtol=1e-10)
        assert (f"{name} gap {100 * rms:.2g} % RMS over t, {100 * final:+.2g} % at t = 7 "
                f"(twin s.e. {100 * se:.2g} %)") in out
    figs = cli._figures(ds)
    titles = [ax.get_title() for ax in figs["losses"].axes]
    assert sum("gap to twin" in t for t in titles) == 2, titles


def test_loss_gap_leaves_out_diverged_seeds():
    import xarray as xr

    t = np.arange(4)
    theory = xr.Dataset({"test_loss": ("t", np.array([1.0, 0.8, 0.6, 0.5]))}, coords={"t": t})
    runs = np.array([[1.0, 0.8, 0.6, 0.4], [1.0, 0.8, 0.6, 0.6], [1.0, np.nan, np.nan, np.nan]])
    sim = xr.Dataset({"test_loss": (("seed", "t"), runs)}, coords={"t": t})
    g = cli.loss_gaps(theory, sim)["test_loss"]
    assert g["final"] == pytest.approx(0.0) and g["rms"] == pytest.approx(0.0)
    assert g["se"] == pytest.approx(0.1 / 0.5) and g["t_final"] == 3


# --------------------------------------------------------------------------------------------------------------
# Empty configs
# --------------------------------------------------------------------------------------------------------------


def test_empty_config_runs_the_defaults_with_a_notice(tmp_path, capsys):
    empty = tmp_path / "empty.toml"
    empty.write_text("# nothing here\n")
    assert main(["run", str(empty), "--out", str(tmp_path / "o"), "--set", "optim.steps=8", "--no-figures"]) == 0
    err = capsys.readouterr().err
    line = _one_line(err)
    assert line.startswith("dmft run: note: config") and "is empty" in line and "deep_linear defaults" in line
    assert load_dataset(tmp_path / "o" / "result.nc").sizes["t"] == 8


def test_config_with_none_of_its_family_keys_gets_a_notice(tmp_path, capsys, monkeypatch):
    bare = tmp_path / "bare.toml"
    bare.write_text('[model]\nfamily = "mean_field"\n\n[optim]\nsteps = 5\n')

    def interrupted(cfg):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "solve", interrupted)
    assert main(["run", str(bare), "--out", str(tmp_path / "o")]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert "sets none of the mean_field keys" in err[0] and "mean_field defaults" in err[0]
    # a key of the family (in the file or by --set) is enough to silence it
    assert main(["run", str(bare), "--out", str(tmp_path / "o"), "--set", "model.depth=2"]) == 130
    assert "note" not in capsys.readouterr().err


def test_shipped_config_gets_no_notice(cfg_path, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(api, "solve", lambda cfg: (_ for _ in ()).throw(KeyboardInterrupt))
    assert main(["run", cfg_path, "--out", str(tmp_path / "o")]) == 130
    assert "note" not in capsys.readouterr().err
