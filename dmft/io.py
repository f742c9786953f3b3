"""Results as xarray Datasets on netCDF: atomic writes that never overwrite or lose a user's saved file."""

from __future__ import annotations

import datetime as _dt
import os
import secrets
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .config import Config, ConfigError, config_from_dict

__all__ = ["save_dataset", "load_dataset", "config_to_toml", "config_of", "attach_config"]

_ENGINE = "netcdf4"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} to TOML")


def config_to_toml(cfg: Config) -> str:
    """The config as TOML text (keys left at None are omitted); ``load_config`` reads it back unchanged."""
    lines = []
    for section, table in cfg.to_dict().items():
        lines.append(f"[{section}]")
        for k, v in table.items():
            if v is not None:
                key = f'"{k}"' if "." in k else k
                lines.append(f"{key} = {_toml_value(v)}")
        lines.append("")
    return "\n".join(lines)


def attach_config(ds: xr.Dataset, cfg: Config) -> xr.Dataset:
    """Store the config in ``ds.attrs``: the full TOML text plus one flat attribute per key."""
    attrs = dict(ds.attrs)
    attrs["config_toml"] = config_to_toml(cfg)
    for k, v in cfg.flat().items():
        if v is not None:
            attrs[k] = int(v) if isinstance(v, bool) else v
    ds = ds.copy()
    ds.attrs = attrs
    return ds


def config_of(ds: xr.Dataset) -> Config:
    """The config a result was computed with."""
    import tomllib

    text = ds.attrs.get("config_toml")
    if text is None:
        raise ConfigError("result: has no 'config_toml' attribute (not written by dmft)")
    return config_from_dict(tomllib.loads(text))


def _sanitize(ds: xr.Dataset) -> xr.Dataset:
    ds = ds.copy()
    for name, var in list(ds.variables.items()):
        if var.dtype == bool:
            ds[name] = var.astype(np.int8)
            ds[name].attrs["dtype"] = "bool"
    clean = {}
    for k, v in ds.attrs.items():
        if v is None:
            continue
        clean[k] = int(v) if isinstance(v, bool | np.bool_) else v
    ds.attrs = clean
    return ds


def _new_temp(path: Path) -> str:
    """A new empty file next to ``path``, created with mode 0o666 so that the user's umask decides who can read
    the result (``tempfile.mkstemp`` would make it 0600 whatever the umask)."""
    while True:
        tmp = path.with_name(f".{path.stem}-{secrets.token_hex(6)}.nc.part")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return str(tmp)
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue


def save_dataset(ds: xr.Dataset, path: str | Path, keep_previous: bool = True) -> Path:
    """Write ``ds`` to netCDF atomically.

    The file is written next to ``path`` under a temporary name and moved into place only when complete, so a
    failed or interrupted run leaves any earlier file untouched. When ``path`` exists and ``keep_previous`` is
    set, the earlier file is kept as ``<stem>-<timestamp>.nc`` instead of being overwritten. The file's mode
    honours the umask (0644 under the usual umask 022).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temp(path)
    try:
        _sanitize(ds).to_netcdf(tmp, engine=_ENGINE)
        if path.exists() and keep_previous:
            stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
            os.replace(path, path.with_name(f"{path.stem}-{stamp}{path.suffix}"))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_dataset(path: str | Path) -> xr.Dataset:
    """Read a result written by :func:`save_dataset` (fully loaded; the file is closed)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"result file {str(path)!r}: not found")
    try:
        with xr.open_dataset(path, engine=_ENGINE) as ds:
            ds = ds.load()
    except Exception as e:  # noqa: BLE001 - any reader failure is reported in one line
        raise ConfigError(f"result file {str(path)!r}: unreadable as netCDF ({type(e).__name__})") from None
    for name, var in list(ds.variables.items()):
        if var.attrs.get("dtype") == "bool":
            attrs = {k: v for k, v in var.attrs.items() if k != "dtype"}
            ds[name] = var.astype(bool)
            ds[name].attrs = attrs
    return ds

