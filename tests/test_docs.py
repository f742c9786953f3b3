"""The documentation site builds with warnings as errors (mkdocs --strict: broken internal links and anchors fail),
its generated pages hold what the code declares, and the paired notebooks agree with their sources.

The site build is skipped when the docs extra is not installed (`pip install ".[docs]"`)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

DOCS_DEPS = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python", "mkdocs_jupyter")


def _have_docs_deps() -> bool:
    try:
        return all(importlib.util.find_spec(m) is not None for m in DOCS_DEPS)
    except ModuleNotFoundError:
        return False


needs_mkdocs = pytest.mark.skipif(not _have_docs_deps(), reason='docs extra not installed (pip install ".[docs]")')


def _mkdocs(args: list[str], cwd: Path, timeout: float = 150) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", "mkdocs", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@needs_mkdocs
def test_site_builds_strict(repo_root: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    res = _mkdocs(["build", "--strict", "--site-dir", str(site)], repo_root)
    assert res.returncode == 0, res.stderr[-4000:]
    cli = (site / "reference" / "cli" / "index.html").read_text()
    from dmft.cli import _parser

    commands = next(a for a in _parser()._actions if hasattr(a, "choices") and isinstance(a.choices, dict)).choices
    for name in commands:  # every command of the parser has its section
        assert f"dmft {name}" in cli, name
    keys = (site / "reference" / "config-keys" / "index.html").read_text()
    from dmft.config import describe_keys

    for row in describe_keys(None):
        assert row["key"] in keys, row["key"]
    gallery = (site / "gallery" / "index.html").read_text()
    from dmft.gallery import CLAIMS, PAPERS

    for paper in PAPERS:
        assert f"arXiv:{paper}" in gallery
    for c in CLAIMS:  # every claim has its section, with its status when it is not reproduced
        assert c.id.replace("_", " ").capitalize() in gallery, c.id
        assert c.status == "reproduced" or f"Status: {c.status}" in gallery, c.id
    api = (site / "reference" / "api" / "index.html").read_text()
    assert "load_config" in api and "run_gallery" in api  # docstrings were rendered
    for nb in (repo_root / "notebooks").glob("*.ipynb"):
        assert (site / "notebooks" / nb.stem / "index.html").is_file(), nb.name


@needs_mkdocs
def test_broken_internal_links_fail_the_build(repo_root: Path, tmp_path: Path) -> None:
    """The site's `validation:` settings turn a link to a missing page or anchor into a build failure."""
    import yaml

    text = (repo_root / "mkdocs.yml").read_text()
    validation = yaml.safe_load(text[text.index("validation:"):text.index("\nmarkdown_extensions:")])
    for target in ("missing.md", "other.md#no-such-heading"):
        proj = tmp_path / target.replace(".", "_").replace("#", "_")
        (proj / "docs").mkdir(parents=True)
        (proj / "docs" / "index.md").write_text(f"# Home\n\nSee [there]({target}).\n")
        (proj / "docs" / "other.md").write_text("# Other\n\n## A heading\n")
        (proj / "mkdocs.yml").write_text(yaml.safe_dump({"site_name": "t", **validation}))
        res = _mkdocs(["build", "--strict", "--site-dir", str(proj / "site")], proj, timeout=60)
        assert res.returncode != 0, target
        assert target.split("#")[-1] in res.stderr + res.stdout


def test_notebook_pairs_are_in_sync(repo_root: Path) -> None:
    """Every notebook source (`notebooks/*.py`, jupytext percent) has its paired `.ipynb` with the same cells, and
    the `.ipynb` holds outputs (it is what the site renders). After editing a `.py`:
    `python docs/execute_notebooks.py NAME` re-pairs and re-executes it."""
    import jupytext

    sources = sorted((repo_root / "notebooks").glob("*.py"))
    paired_sources = [s for s in sources if "ipynb" in jupytext.read(s).metadata.get("jupytext", {}).get("formats", "")]
    assert len(paired_sources) >= 4, "the four family notebooks are paired (jupytext --set-formats ipynb,py:percent)"
    for src in paired_sources:
        paired = src.with_suffix(".ipynb")
        assert paired.is_file(), f"{paired.name} missing: python docs/execute_notebooks.py {src.stem}"
        text = jupytext.read(src)
        nb = jupytext.read(paired)
        a = [(c.cell_type, c.source.strip()) for c in text.cells]
        b = [(c.cell_type, c.source.strip()) for c in nb.cells]
        assert a == b, f"{paired.name} differs from {src.name}: python docs/execute_notebooks.py {src.stem}"
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert any(c.get("outputs") for c in code), f"{paired.name} has no outputs"
        assert not any(o.get("output_type") == "error" for c in code for o in c.get("outputs", [])), paired.name
        assert 'matplotlib.use("Agg")' not in "".join(c.source for c in code), src.name
        assert "configs/" not in "".join(c.source for c in code), f"{src.name}: use dmft.shipped.find_config"
