"""The claims gallery: every paper has its claims, every reproducible claim a shipped config, a figure and a
measure; `dmft gallery --quick` makes a figure with a caption of measured numbers (one job here, to fit CI)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from dmft import gallery
from dmft.cli import main
from dmft.config import ConfigError, load_config
from dmft.shipped import find_config

#: The job run here at --quick size (the cheapest one that still compares theory and twin).
CI_JOB = "mf_relu"


def test_every_paper_has_claims_and_every_claim_a_way_to_make_it() -> None:
    assert set(gallery.PAPERS) == {"2605.07870", "2502.02531", "2205.09653", "2510.01930", "2507.12709", "2509.01349"}
    assert len({c.id for c in gallery.CLAIMS}) == len(gallery.CLAIMS)
    for paper in gallery.PAPERS:
        assert any(c.paper == paper and c.status == "reproduced" for c in gallery.CLAIMS), paper
    for c in gallery.CLAIMS:
        assert c.paper in gallery.PAPERS and c.status in ("reproduced", "in progress", "not reproduced")
        if c.status == "reproduced":
            assert c.job in gallery.JOBS and c.figure and c.measure is not None and c.shows, c.id
        else:
            assert c.job is None and c.why, c.id  # says why it is not reproduced
    for job in gallery.JOBS.values():
        cfg = load_config(find_config(job.config))  # shipped under configs/figures/, by name
        assert (job.command == "sweep") == bool(cfg.sweep_axes), job.name
        load_config(find_config(job.config), overrides=[f"{k}={gallery._toml(v)}" for k, v in job.quick.items()])


def test_gallery_list_and_bad_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gallery", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(c.id in out for c in gallery.CLAIMS)
    with pytest.raises(ConfigError, match="did you mean 'lr_transfer'"):
        gallery.select(["lr_transfr"])


def test_quick_gallery_writes_figures_with_measured_captions(tmp_path: Path) -> None:
    assert main(["gallery", "--quick", "--only", CI_JOB, "--out", str(tmp_path)]) == 0
    claims = [c for c in gallery.CLAIMS if c.job == CI_JOB]
    for c in claims:
        rec = json.loads((tmp_path / f"{c.id}.json").read_text())
        assert "error" not in rec and rec["quick"] and (tmp_path / rec["png"]).stat().st_size > 10_000
        assert rec["numbers"] and all(v is None or math.isfinite(v) for v in rec["numbers"].values())
        assert len(re.findall(r"\d+\.\d+", rec["caption"])) >= 2, rec["caption"]  # numbers, not adjectives
    page = gallery.markdown(tmp_path, link_prefix="gallery/")
    for c in claims:
        assert f"(gallery/{c.id}.png)" in page and "*Measured* (with `--quick`" in page
    not_made = next(c for c in gallery.CLAIMS if c.job not in (None, CI_JOB))
    assert f"`dmft gallery --only {not_made.id}`" in page
