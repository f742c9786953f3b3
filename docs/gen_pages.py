"""MkDocs hook: pages generated from the code at build time, so that no table can drift from what it documents.

* ``reference/cli.md`` — every ``dmft`` command, from the argparse parser (:func:`dmft.cli._parser`);
* ``reference/config-keys.md`` — every config key, from :func:`dmft.config.describe_keys` (the declarations);
* ``gallery.md`` — the claims gallery, from :data:`dmft.gallery.CLAIMS` and the captions that ``dmft gallery``
  wrote next to its figures in ``docs/gallery/``;
* ``performance.md`` and ``adding-a-family.md`` — the README's sections of those names;
* ``notebooks/*.ipynb`` — the paired notebooks (rendered by mkdocs-jupyter with their stored outputs).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


# ----------------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------------


def cli_page() -> str:
    import argparse

    from dmft.cli import _parser

    os.environ["COLUMNS"] = "110"  # argparse wraps help text to the terminal width
    parser = _parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help for a in sub._choices_actions}
    out = [
        "# Command line",
        "",
        "Generated from the `dmft` argument parser (`dmft.cli._parser`) when the site is built.",
        "Every command exits with status 2 and a one-line reason on bad input.",
        "",
        "```text",
        parser.format_help().rstrip(),
        "```",
        "",
    ]
    for name, sp in sub.choices.items():
        out += [f"## dmft {name}", "", f"{helps.get(name, '')}.", "", "| argument | meaning | default |",
                "|---|---|---|"]
        for a in sp._actions:
            if isinstance(a, argparse._HelpAction):
                continue
            flag = ", ".join(a.option_strings) or a.dest
            if a.metavar and a.option_strings:
                meta = " ".join(a.metavar) if isinstance(a.metavar, tuple) else a.metavar
                flag += f" {meta}"
            elif a.option_strings and a.nargs != 0:
                flag += f" {a.dest.upper()}"
            if a.choices:
                flag += " {" + ",".join(map(str, a.choices)) + "}"
            default = "" if a.default in (None, False, [], argparse.SUPPRESS) else f"`{a.default}`"
            out.append(f"| `{_cell(flag)}` | {_cell(a.help or '')} | {default} |")
        out += ["", "```text", sp.format_help().rstrip(), "```", ""]
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------------------------
# Config keys
# ----------------------------------------------------------------------------------------------------------------


def keys_page() -> str:
    from dmft.config import describe_keys
    from dmft.families import REGISTRY

    rows = describe_keys(None)
    sections: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        sections.setdefault(r["key"].split(".", 1)[0], []).append(r)
    out = [
        "# Config keys",
        "",
        "Generated from the key declarations (`dmft.config.describe_keys`) when the site is built; "
        "`dmft keys [FAMILY]` prints the same information. A key set for a family it does not apply to is a "
        "one-line error. *One compile*: sweeping the key reuses one compiled program (vmapped).",
        "",
        "## Keys by family",
        "",
        "| family | summary | keys |",
        "|---|---|---|",
    ]
    for name, fam in REGISTRY.items():
        keys = ", ".join(f"`{k}`" for k in fam.all_keys)
        out.append(f"| `{name}` | {_cell(fam.summary)} | {keys} |")
    for section, items in sections.items():
        out += ["", f"## [{section}]", "", "| key | meaning | type | default | allowed | families | sweep |",
                "|---|---|---|---|---|---|---|"]
        for r in items:
            default = "(none)" if r["default"] is None else f"`{r['default']!r}`"
            out.append(
                f"| `{r['key']}` | {_cell(r['meaning'])} | {r['type']} | {_cell(default)} | {_cell(r['allowed'])} | "
                f"{', '.join(r['families'])} | {'one compile' if r['vmappable'] else 'looped'} |"
            )
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------------------------------------------
# Gallery
# ----------------------------------------------------------------------------------------------------------------


def gallery_page(docs_dir: Path) -> str:
    from dmft.gallery import markdown

    return markdown(docs_dir / "gallery", link_prefix="gallery/")


# ----------------------------------------------------------------------------------------------------------------
# README sections
# ----------------------------------------------------------------------------------------------------------------


def readme_section(heading: str, title: str | None = None) -> str:
    """The README section under ``heading`` (a line such as ``## Performance``), up to the next heading of the
    same or a higher level, promoted so that it opens with a level-1 title."""
    lines = (ROOT / "README.md").read_text().splitlines()
    level = len(heading) - len(heading.lstrip("#"))
    start = lines.index(heading)
    end = len(lines)
    for i in range(start + 1, len(lines)):
        m = re.match(r"^(#+) ", lines[i])
        if m and len(m.group(1)) <= level:
            end = i
            break
    body = lines[start + 1:end]
    shift = level - 1
    out = [f"# {title or heading.lstrip('# ')}", "", "*From the README (generated when the site is built).*", ""]
    for line in body:
        m = re.match(r"^(#+) (.*)", line)
        out.append(f"{'#' * (len(m.group(1)) - shift)} {m.group(2)}" if m else line)
    text = "\n".join(out) + "\n"
    return text.replace("](docs/", "](")


# ----------------------------------------------------------------------------------------------------------------
# Hook
# ----------------------------------------------------------------------------------------------------------------


def on_config(config: Any) -> Any:
    """Every paired notebook appears under "Notebooks" in the navigation (a new one needs no edit here)."""
    nav = config.get("nav") or []
    for section in nav:
        if isinstance(section, dict) and "Notebooks" in section:
            entries = section["Notebooks"]
            listed = {next(iter(e.values())) if isinstance(e, dict) else e for e in entries}
            for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
                if f"notebooks/{nb.name}" not in listed:
                    entries.append({nb.stem.replace("_", " ").capitalize(): f"notebooks/{nb.name}"})
    return config


@event_priority(50)  # before mkdocs-jupyter (priority 0), which converts the notebook files added here
def on_files(files: Files, config: Any) -> Files:
    docs_dir = Path(config["docs_dir"])
    pages = {
        "reference/cli.md": cli_page(),
        "reference/config-keys.md": keys_page(),
        "gallery.md": gallery_page(docs_dir),
        "performance.md": readme_section("## Performance"),
        "adding-a-family.md": readme_section("## Layout", "Adding a family"),
    }
    for uri, content in pages.items():
        files.append(File.generated(config, uri, content=content))
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        files.append(File(f"notebooks/{nb.name}", src_dir=str(ROOT), dest_dir=config["site_dir"],
                          use_directory_urls=config["use_directory_urls"]))
    return files
