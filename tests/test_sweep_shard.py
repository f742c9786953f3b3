"""Job arrays: `dmft sweep --shard I/N` computes every N-th point into one folder, `--merge DIR` assembles it, and
the result equals the sweep run in one go; no point is computed twice, none is lost."""

from __future__ import annotations

import numpy as np
import pytest

import dmft
from dmft.cli import main
from dmft.io import load_dataset
from dmft.sweep import executors, merge

SWEEP = """
lr = [0.02, 0.05, 0.1]
gamma0 = [0.5, 2.0]
depth = [1, 2]
"""  # on the shared tiny deep-linear config (conftest.tiny_sweep_toml)


B = 2  # one vmapped program size for every test of the sweep engine (shared through the compilation cache)


@pytest.fixture
def tiny_path(tmp_path, tiny_sweep_toml):
    path = tmp_path / "tiny.toml"
    path.write_text(tiny_sweep_toml(SWEEP))
    return path


@pytest.fixture
def counted(monkeypatch):
    seen: list = []
    real = executors._raw

    def spy(family, kind, cfgs):
        seen.extend(dict.fromkeys(cfgs))
        return real(family, kind, cfgs)

    monkeypatch.setattr(executors, "_raw", spy)
    return seen


def test_shards_then_merge_equal_one_sweep(tiny_path, tmp_path, counted):
    cfg = dmft.load_config(tiny_path)
    whole = dmft.sweep(cfg, progress=False, batch_size=B)
    counted.clear()
    out = tmp_path / "arr"
    for i in (2, 0):  # shards run in any order; shard 1 is still "queued"
        assert dmft.sweep(cfg, out_dir=out, progress=False, shard=(i, 3), batch_size=B) is None
    with pytest.raises(dmft.ConfigError, match="4 missing of 12 points"):
        merge(out)
    assert dmft.sweep(cfg, out_dir=out, progress=False, shard="1/3", batch_size=B) is None
    assert len(counted) == 12 and len({id(c) for c in counted}) == 12  # each point exactly once
    by_shard = [sorted(p.index for p in executors.points_of(cfg) if p.index % 3 == i) for i in range(3)]
    assert sorted(sum(by_shard, [])) == list(range(12))
    counted.clear()
    assert dmft.sweep(cfg, out_dir=out, progress=False, shard=(1, 3)) is None and counted == []  # a rerun: nothing
    merged = merge(out)
    assert merged.equals(whole)  # bit for bit: the same programs computed the same points
    np.testing.assert_array_equal(merged.test_loss.values, whole.test_loss.values)
    # a whole sweep on the folder finds every point done
    assert dmft.sweep(cfg, out_dir=out, progress=False).equals(whole) and counted == []


def test_cli_shard_and_merge(tiny_path, tmp_path, capsys):
    out = tmp_path / "cli"
    for i in range(2):
        assert main(["sweep", str(tiny_path), "--out", str(out), "--shard", f"{i}/2", "--no-figures",
                     "--batch-size", "2"]) == 0
    said = capsys.readouterr().out
    assert "shard 0/2 finished; 6 solve points of the grid still to compute" in said
    assert f"every point of the grid is done; assemble with: dmft sweep --merge {out}" in said
    assert not (out / "result.nc").exists()
    assert main(["sweep", "--merge", str(out)]) == 0
    grid = load_dataset(out / "result.nc")
    assert dict(grid.sizes) == {**dict(grid.sizes), "lr": 3, "gamma0": 2, "depth": 2}
    assert any(p.suffix == ".png" for p in out.iterdir())
    assert "12 points" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--shard", "2/2"], "--shard = '2/2'"),
        (["--shard", "x"], "must be I/N"),
        (["--executor", "local", "--batch-size", "0"], "--batch-size = 0"),
    ],
)
def test_bad_shard_options_are_one_line_errors(tiny_path, tmp_path, capsys, args, fragment):
    assert main(["sweep", str(tiny_path), "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0], err


def test_merge_of_a_folder_that_is_not_a_sweep(tmp_path, capsys):
    assert main(["sweep", "--merge", str(tmp_path)]) == 2
    assert "no sweep.toml" in capsys.readouterr().err
