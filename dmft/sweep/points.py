"""The point store of a sweep: one netCDF file per finished grid point, versioned, locked, written atomically.

Layout of a sweep folder ``DIR``::

    DIR/sweep.toml                the swept config (with its [sweep] table): what ``dmft sweep --merge DIR`` reads
    DIR/points/<key>.nc           one finished point; <key> hashes its kind and its full config
    DIR/points/.lock              held by the sweep writing the folder (``.lock-shard-I-of-N`` for a shard)
    DIR/result.nc                 the merged grid (written by the CLI)

Every saved point carries its config (``config_toml``), the library version (``dmft_version``) and a hash of the
source files that computed it (``code_hash``: the family's package except its figures, ``solvers/``,
``dmft/spectra/``, ``dmft/scaling.py``, ``dmft/results.py``, ``dmft/_jax.py``). On resume a point whose version or
code hash differs from the running library is **stale**: it is recomputed, and the user is told how many.

Locking: a sweep holds an exclusive ``fcntl.flock`` on its lock file for as long as it runs, and writes its pid and
host into it. The kernel drops the lock when the process dies (even by SIGKILL), so a stale lock file from a dead
process is simply taken over; a live owner stops the second sweep with a one-line error naming the lock and the
owner's pid. Shards (``--shard I/N``) each hold their own lock, so the N array jobs of one sweep write one folder
together, while a whole (unsharded) sweep and a shard of it exclude each other.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Config, ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

__all__ = ["point_key", "code_hash", "PointStore", "SweepLocked", "MANIFEST"]

#: The swept config, written next to ``points/`` so that ``--merge DIR`` knows the grid.
MANIFEST = "sweep.toml"

_ROOT = Path(__file__).resolve().parents[2]


def _plain(cfg: Config) -> Config:
    import dataclasses

    return dataclasses.replace(cfg, sweep=()) if cfg.sweep else cfg


def point_key(cfg: Config, kind: str) -> str:
    """A stable file name for one sweep point: a hash of its full config and of what was computed."""
    from ..io import config_to_toml

    text = kind + "\n" + config_to_toml(_plain(cfg))
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _sources(family: str) -> list[Path]:
    pkg = _ROOT / "dmft"
    files = [p for p in (pkg / "families" / family).rglob("*.py") if p.name != "figures.py"]
    files += list((_ROOT / "solvers").rglob("*.py")) + list((pkg / "spectra").rglob("*.py"))
    files += [pkg / "scaling.py", pkg / "results.py", pkg / "_jax.py"]
    return sorted(p for p in files if p.is_file())


@cache
def code_hash(family: str) -> str:
    """A short hash of the source files that compute a point of ``family`` (see the module docstring)."""
    h = hashlib.sha1()
    for p in _sources(family):
        h.update(str(p.relative_to(_ROOT)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def _version() -> str:
    from .. import __version__

    return __version__


class SweepLocked(ConfigError):
    """Another live sweep holds the lock of this folder (a :class:`ConfigError`: the CLI prints one line)."""


@dataclass
class Loaded:
    """What the store holds for one point: ``ds`` when current, else why it is ``stale`` (or None if missing)."""

    ds: xr.Dataset | None
    stale: str | None = None


class PointStore:
    """The finished points of one sweep folder, for one kind (``solve`` or ``simulate``)."""

    def __init__(self, folder: str | Path, family: str):
        self.dir = Path(folder)
        self.points = self.dir / "points"
        self.family = family
        self.code_hash = code_hash(family)
        self.version = _version()

    # ---- points -----------------------------------------------------------------------------------------------
    def path(self, cfg: Config, kind: str) -> Path:
        return self.points / f"{point_key(cfg, kind)}.nc"

    def has(self, cfg: Config, kind: str) -> bool:
        """Whether a current (not stale) point is saved; reads only the file's attributes."""
        path = self.path(cfg, kind)
        if not path.is_file():
            return False
        try:
            import netCDF4

            with netCDF4.Dataset(path) as nc:
                attrs = {k: nc.getncattr(k) for k in ("dmft_version", "code_hash") if k in nc.ncattrs()}
        except OSError:
            return False
        return self._why_stale(attrs) is None

    def load(self, cfg: Config, kind: str) -> Loaded:
        """The saved point for ``cfg``: current, stale (with the reason), or missing."""
        from ..io import config_to_toml, load_dataset

        path = self.path(cfg, kind)
        if not path.is_file():
            return Loaded(None)
        try:
            ds = load_dataset(path)
        except ConfigError:
            return Loaded(None, stale="unreadable")
        why = self._why_stale(ds.attrs)
        if why is None and ds.attrs.get("config_toml") != config_to_toml(_plain(cfg)):
            why = "its saved config differs"
        return Loaded(ds if why is None else None, stale=why)

    def _why_stale(self, attrs: Any) -> str | None:
        version, code = attrs.get("dmft_version"), attrs.get("code_hash")
        if version != self.version:
            return f"dmft {version or '(unknown version)'}"
        if code != self.code_hash:
            return f"solver code {code or '(no hash)'}"
        return None

    def save(self, ds: xr.Dataset, cfg: Config, kind: str) -> Path:
        """Save a finished point atomically (it replaces a stale file of the same key)."""
        from ..io import save_dataset

        ds = ds.copy()
        ds.attrs["code_hash"] = self.code_hash
        ds.attrs["dmft_version"] = self.version
        ds.attrs["point_kind"] = kind
        return save_dataset(ds, self.path(cfg, kind), keep_previous=False)

    # ---- manifest ---------------------------------------------------------------------------------------------
    def write_manifest(self, cfg: Config) -> None:
        """Write ``DIR/sweep.toml`` (the swept config) atomically, unless it already says the same."""
        from ..io import config_to_toml

        text = config_to_toml(cfg)
        path = self.dir / MANIFEST
        if path.is_file() and path.read_text() == text:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{MANIFEST}.{os.getpid()}.part")
        tmp.write_text(text)
        os.replace(tmp, path)

    # ---- lock -------------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, shard: tuple[int, int] | None = None) -> Iterator[str | None]:
        """Hold the folder's lock (or the shard's) for the duration; yields a note when a stale lock was taken
        over. Raises :class:`SweepLocked` when a live process holds it (or, for a shard, the whole-sweep lock;
        for a whole sweep, any shard's lock)."""
        self.points.mkdir(parents=True, exist_ok=True)
        name = ".lock" if shard is None else f".lock-shard-{shard[0]}-of-{shard[1]}"
        fd, note = _acquire(self.points / name)
        try:
            others = [self.points / ".lock"] if shard is not None else sorted(self.points.glob(".lock-shard-*"))
            for other in others:
                owner = _live_owner(other)
                if owner is not None:
                    raise SweepLocked(_locked_message(other, owner))
            yield note
        finally:
            _release(self.points / name, fd)


def _owner_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _locked_message(path: Path, owner: str) -> str:
    fields = dict(f.split("=", 1) for f in owner.split() if "=" in f)
    who = f"pid {fields.get('pid', '?')} on {fields.get('host', '?')}"
    return f"sweep folder is in use: lock {path} is held by {who} (wait for it to finish, or use another --out)"


def _acquire(path: Path) -> tuple[int, str | None]:
    import fcntl

    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise SweepLocked(_locked_message(path, _owner_text(path) or "pid=? host=?")) from None
            raise
        # the file we locked must still be the one at `path` (a releasing owner unlinks it before closing)
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        previous = os.read(fd, 4096).decode(errors="replace").strip()
        note = None
        if previous:
            fields = dict(f.split("=", 1) for f in previous.split() if "=" in f)
            note = f"took over the stale lock {path} of pid {fields.get('pid', '?')} (no longer running)"
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid={os.getpid()} host={socket.gethostname()} since={int(time.time())}\n".encode())
        return fd, note


def _release(path: Path, fd: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    os.close(fd)


def _live_owner(path: Path) -> str | None:
    """The owner text of a lock file held by a live process (None if absent or free)."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return _owner_text(path) or "pid=? host=?"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
