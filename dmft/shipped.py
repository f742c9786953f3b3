"""Shipped configs, reachable by name once the package is installed (``dmft run deep_linear_mup``).

The configs live in the repository's ``configs/`` folder and are packaged as ``dmft/_configs`` in the wheel.
A name is a path relative to that folder without ``.toml`` (``deep_linear_mup``, ``sweeps/lr_transfer``); a
bare sweep name (``lr_transfer``) is found too when it is unique.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .config import ConfigError

__all__ = ["config_root", "list_configs", "find_config", "describe", "copy_config"]


def config_root() -> Path:
    """The folder of the shipped configs (the installed package's copy, or the source checkout's)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_configs", here.parent / "configs"):
        if candidate.is_dir():
            return candidate
    raise ConfigError("shipped configs: not found (neither dmft/_configs nor ./configs next to the package)")


def list_configs() -> dict[str, Path]:
    """``{name: path}`` of every shipped config, sorted by name."""
    root = config_root()
    return {str(p.relative_to(root).with_suffix("")): p for p in sorted(root.rglob("*.toml"))}


def describe(path: Path) -> str:
    """The first comment line of a config: its one-line description."""
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
        if line.strip():
            break
    return ""


def find_config(name_or_path: str) -> Path:
    """A config file: an existing path as given, else a shipped config by name (one-line error otherwise)."""
    p = Path(name_or_path)
    if p.is_file() or p.suffix == ".toml":
        return p  # a path: load_config reports it if missing
    shipped = list_configs()
    if name_or_path in shipped:  # a name, also one with its folder (sweeps/lr_transfer, figures/dl_mup)
        return shipped[name_or_path]
    if p.parent != Path("."):
        return p
    tails = [k for k in shipped if k.rsplit("/", 1)[-1] == name_or_path]
    if len(tails) == 1:
        return shipped[tails[0]]
    import difflib

    close = difflib.get_close_matches(name_or_path, list(shipped), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(
        f"config {name_or_path!r}: no such file and no shipped config of that name{hint}; `dmft configs` lists them"
    )


def copy_config(name: str, dest: str | Path) -> Path:
    """Copy a shipped config into ``dest`` (a folder or a file name) to edit it; never overwrites a file."""
    src = find_config(name)
    dest = Path(dest)
    target = dest / src.name if dest.is_dir() or str(dest).endswith(("/", "\\")) or not dest.suffix else dest
    if target.exists():
        raise ConfigError(f"--copy {name!r}: {str(target)!r} exists; not overwritten")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, target)
    return target
