"""Running a sweep: which points are pending, and who computes them (this process's devices, a Ray cluster, or
one shard of a job array), with every finished point saved at once to the point store.

* ``local`` — groups of points that differ only in vmappable keys run as vmapped batches, spread over every local
  device (:mod:`.sharding`); the other axes are looped.
* ``ray`` — one Ray task per batch (``ray`` is imported only here, only when asked for). Tasks write their points
  to the store themselves (a shared folder on a real cluster) and skip points already there, so a task retried
  after its worker died does not redo finished points; the driver writes what a worker could not (no shared
  folder). Ray retries a task whose worker died (``retries`` times).
* ``shard=(i, n)`` — with either executor, only the points whose grid index is i modulo n (independent of timing,
  so the N jobs of an array never overlap); :func:`merge` assembles the folder afterwards.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Config, ConfigError
from ..families import get_family
from .grid import Point, combine, group_points, points_of
from .points import MANIFEST, PointStore

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

    from ..family import Family

__all__ = ["sweep", "merge", "complete_kinds", "EXECUTORS", "KINDS", "parse_shard"]

EXECUTORS = ("local", "ray")
KINDS = ("solve", "simulate")
_LABEL = {"solve": "theory", "simulate": "simulation"}
_PKG_ROOT = str(Path(__file__).resolve().parents[2])


def _tell(msg: str) -> None:
    print(f"dmft sweep: {msg}", file=sys.stderr, flush=True)


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` → ``(i, n)`` with 0 ≤ i < n (a one-line :class:`ConfigError` otherwise)."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard = {text!r}: must be I/N, e.g. 0/8 (I = 0 … N-1)") from None
    if not (n >= 1 and 0 <= i < n):
        raise ConfigError(f"--shard = {text!r}: must be I/N with 0 <= I < N")
    return i, n


# --------------------------------------------------------------------------------------------------------------
# Computing a batch (the same code in this process, in a thread per device, and in a Ray worker)
# --------------------------------------------------------------------------------------------------------------


def _raw(family: Family, kind: str, cfgs: list[Config]) -> list[xr.Dataset]:
    """The family's results for ``cfgs`` (one vmapped call when it can batch), on the current default device."""
    from .._jax import float64

    with float64():
        batch = family.solve_batch if kind == "solve" else family.simulate_batch
        if batch is not None and len(cfgs) > 1:
            return list(batch(cfgs))
        if kind == "solve":
            return [family.solve(c) for c in cfgs]
        return [family.simulate(c, False) for c in cfgs]


def _finish(family: Family, kind: str, ds: xr.Dataset, cfg: Config) -> xr.Dataset:
    from ..io import attach_config
    from ..results import finalize

    ds.attrs["kind"] = _LABEL[kind]
    return finalize(attach_config(ds, cfg), family.long_names)


def _ray_batch(family_name: str, kind: str, tomls: list[str], folder: str | None, pad_to: int,
               cache: str | None) -> list[xr.Dataset]:
    """A Ray task: compute (or load, if a previous attempt saved them) the points given as TOML texts."""
    import tomllib

    from ..config import config_from_dict
    from . import cache as _cache

    if cache:
        _cache.enable(cache)
    family = get_family(family_name)
    cfgs = [config_from_dict(tomllib.loads(t)) for t in tomls]
    store = PointStore(folder, family_name) if folder else None
    out: list[Any] = [None] * len(cfgs)
    if store is not None:
        for i, c in enumerate(cfgs):
            loaded = store.load(c, kind) if store.has(c, kind) else None
            out[i] = loaded.ds if loaded is not None else None
    todo = [i for i in range(len(cfgs)) if out[i] is None]
    if todo:
        run = [cfgs[i] for i in todo]
        padded = run + [run[-1]] * (max(pad_to, len(run)) - len(run))  # the program its batch was planned for
        for i, ds in zip(todo, _raw(family, kind, padded), strict=False):
            ds = _finish(family, kind, ds, cfgs[i])
            if store is not None:
                store.save(ds, cfgs[i], kind)
            out[i] = ds
    return out


# --------------------------------------------------------------------------------------------------------------
# Executors
# --------------------------------------------------------------------------------------------------------------

Emit = Callable[[Point, "xr.Dataset"], None]


def _run_local(family: Family, kind: str, groups: list[list[Point]], emit: Emit, batch_size: int | None,
               devices: int | None) -> None:
    from .sharding import BatchSizer, local_devices, nbytes, pad_size, run_on_devices

    devs = local_devices(devices)
    sizer = BatchSizer(devs, batch_size)

    def run(cfgs: list[Config]) -> list[xr.Dataset]:
        return _raw(family, kind, cfgs)

    for group in groups:
        start, compiled = 0, set()  # padded sizes of this group already run (compiled) once
        while start < len(group):
            chunk = group[start : start + sizer.chunk()]
            start += len(chunk)
            size = pad_size(-(-len(chunk) // len(devs)), sizer.size)
            # a new program: compile it on one device, the others load it from the persistent cache — on GPUs,
            # whose cache key leaves out the device (jax/_src/cache_key.py); a CPU device's key names the device,
            # so there every device compiles its own and starting them together is faster
            first_alone = size not in compiled and devs[0].platform == "gpu"
            outs = run_on_devices(run, [p.cfg for p in chunk], devs, sizer.size, first_alone=first_alone)
            compiled.add(size)
            sizer.observe(len(chunk), sum(nbytes(ds) for ds in outs))
            for p, ds in zip(chunk, outs, strict=True):
                emit(p, _finish(family, kind, ds, p.cfg))


def _ray_connect(address: str | None, workers: int | None) -> bool:
    """Connect to Ray (or start a local instance); True when this call started it (and must shut it down)."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray: pip install 'dmft-spectra[ray]'") from None
    if ray.is_initialized():
        return False
    env = {"PYTHONPATH": os.pathsep.join(p for p in (_PKG_ROOT, os.environ.get("PYTHONPATH", "")) if p),
           "OPENBLAS_NUM_THREADS": "1"}
    for k in ("DMFT_CACHE_DIR", "DMFT_NO_CACHE", "XLA_FLAGS", "JAX_PLATFORMS"):
        if k in os.environ:
            env[k] = os.environ[k]
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"))  # see dmft/cli.py
    kwargs: dict[str, Any] = {"runtime_env": {"env_vars": env}, "logging_level": "ERROR", "log_to_driver": False}
    if address is None:
        kwargs.update(num_cpus=workers or os.cpu_count(), include_dashboard=False)
    elif workers is not None:
        raise ConfigError("--workers applies to a local Ray instance only (not with --address)")
    import warnings

    with warnings.catch_warnings():
        # Ray starts its head processes with Popen(preexec_fn=...), which runs JAX's at-fork hook; the child execs
        # at once, so JAX's "os.fork() was called" warning does not apply
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
        ray.init(address=address, **kwargs)
    return True


def ray_batch_size(n_points: int, workers: int) -> int:
    """Default points per Ray task: enough tasks to keep every worker busy twice over, at most the local
    executor's first batch size (so that a Ray sweep and a local one on CPU run the same programs)."""
    from .sharding import FIRST_BATCH

    return max(1, min(FIRST_BATCH, math.ceil(n_points / (2 * max(workers, 1)))))


def _run_ray(family: Family, kind: str, groups: list[list[Point]], emit: Emit, batch_size: int | None,
             store: PointStore | None, address: str | None, workers: int | None, retries: int) -> None:
    started = _ray_connect(address, workers)
    import ray

    from . import cache as _cache

    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        n_points = sum(len(g) for g in groups)
        size = batch_size or ray_batch_size(n_points, cpus)
        cache_dir = _cache.enabled_dir() or (None if _cache.is_off() else _cache.default_dir())
        task = ray.remote(num_cpus=1, max_retries=retries, retry_exceptions=False)(_ray_batch)
        from ..io import config_to_toml
        from .sharding import pad_size

        batches: dict[Any, list[Point]] = {}
        for group in groups:
            for k in range(0, len(group), size):
                chunk = group[k : k + size]
                ref = task.remote(family.name, kind, [config_to_toml(p.cfg) for p in chunk],
                                  str(store.dir) if store is not None else None, pad_size(len(chunk), size),
                                  str(cache_dir) if cache_dir else None)
                batches[ref] = chunk
        pending = list(batches)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1, timeout=1.0)
                for ref in done:
                    for p, ds in zip(batches[ref], ray.get(ref), strict=True):
                        emit(p, ds)
        finally:
            for ref in pending:
                ray.cancel(ref)
    finally:
        if started:
            ray.shutdown()


# --------------------------------------------------------------------------------------------------------------
# The sweep
# --------------------------------------------------------------------------------------------------------------


def sweep(
    cfg: Config,
    out_dir: str | Path | None = None,
    kind: str = "solve",
    executor: str = "local",
    progress: bool = True,
    on_point: Callable[[dict[str, Any], xr.Dataset], None] | None = None,
    *,
    shard: tuple[int, int] | str | None = None,
    batch_size: int | None = None,
    devices: int | None = None,
    address: str | None = None,
    workers: int | None = None,
    retries: int = 3,
    cache: bool = False,
) -> xr.Dataset | None:
    """Solve (``kind="solve"``) or simulate (``kind="simulate"``) every point of ``cfg``'s ``[sweep]`` grid.

    Points that differ only in vmappable keys (lr, gamma0, sigma, alpha, noise, parameterization, ...) are
    batched under one compile and spread over the local devices (``devices``: how many; default all); the other
    axes are looped. ``batch_size``: points per vmapped call per device (default: fitted to memory). With
    ``out_dir``, every finished point is saved at once to ``out_dir/points/<hash>.nc`` with its config, the library
    version and a hash of the solver code; a re-run skips current points and recomputes stale ones (and says so),
    so an interrupted sweep resumes where it stopped. A lock file stops two sweeps writing one folder.

    ``executor="ray"`` runs one task per batch on a Ray cluster (``address``; default a local instance with
    ``workers`` CPUs), retrying a task whose worker died ``retries`` times. ``shard=(i, n)`` (or ``"i/n"``)
    computes only the points whose grid index is i mod n and returns None; :func:`merge` assembles the folder.
    ``cache``: first turn on the persistent compilation cache in this process (:mod:`dmft.sweep.cache`; the
    ``dmft`` command always does, unless ``--no-cache``); Ray workers use the driver's cache folder.

    Returns one Dataset with one dimension per sweep axis.
    """
    if kind not in KINDS:
        raise ConfigError(f"sweep kind = {kind!r}: must be 'solve' or 'simulate'")
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor = {executor!r}: must be one of {', '.join(EXECUTORS)}")
    if not cfg.sweep:
        raise ConfigError("sweep: the config has no [sweep] table; add lists, e.g. width_ratio = [1, 2, 4]")
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"--batch-size = {batch_size}: must be >= 1")
    if isinstance(shard, str):
        shard = parse_shard(shard)
    if shard is not None and out_dir is None:
        raise ConfigError("--shard needs an output folder (--out) shared by every shard")
    if cache:
        from . import cache as _cache

        _cache.enable()
    family = get_family(cfg.model.family)
    points = points_of(cfg)
    store = PointStore(out_dir, family.name) if out_dir is not None else None
    if store is None:
        return _execute(cfg, family, kind, points, None, executor, progress, on_point, shard, batch_size, devices,
                        address, workers, retries)
    with store.lock(shard) as note:
        if note:
            _tell(note)
        store.write_manifest(cfg)
        return _execute(cfg, family, kind, points, store, executor, progress, on_point, shard, batch_size, devices,
                        address, workers, retries)


def _execute(cfg: Config, family: Family, kind: str, points: list[Point], store: PointStore | None, executor: str,
             progress: bool, on_point: Any, shard: tuple[int, int] | None, batch_size: int | None,
             devices: int | None, address: str | None, workers: int | None, retries: int) -> xr.Dataset | None:
    mine = points if shard is None else [p for p in points if p.index % shard[1] == shard[0]]
    results: dict[int, xr.Dataset] = {}
    stale: dict[str, int] = {}
    if store is not None:
        for p in mine:
            got = store.load(p.cfg, kind)
            if got.ds is not None:
                results[p.index] = got.ds
            elif got.stale:
                stale[got.stale] = stale.get(got.stale, 0) + 1
    if stale:
        n = sum(stale.values())
        why = "; ".join(f"{k} ({v})" for k, v in stale.items())
        _tell(f"{n} saved point{'s' * (n != 1)} stale (computed by {why}, now dmft {store.version} with solver "
              f"code {store.code_hash}): recomputing {'them' if n != 1 else 'it'}")
    pending = [p for p in mine if p.index not in results]

    bar = None
    if progress:
        from tqdm.auto import tqdm

        desc = f"sweep ({kind})" + (f" shard {shard[0]}/{shard[1]}" if shard else "")
        bar = tqdm(total=len(mine), initial=len(mine) - len(pending), desc=desc, unit="pt")

    def emit(p: Point, ds: xr.Dataset) -> None:
        if store is not None and (executor == "local" or not store.path(p.cfg, kind).is_file()):
            store.save(ds, p.cfg, kind)  # a Ray worker saved it already when the folder is shared
        results[p.index] = ds
        if on_point is not None:
            on_point(p.coords, ds)
        if bar is not None:
            bar.update(1)

    try:
        groups = group_points(cfg, pending)
        if executor == "ray":
            _run_ray(family, kind, groups, emit, batch_size, store, address, workers, retries)
        else:
            _run_local(family, kind, groups, emit, batch_size, devices)
    finally:
        if bar is not None:
            bar.close()
    if shard is not None:
        return None
    return combine(cfg, [results[p.index] for p in points], [p.coords for p in points])


# --------------------------------------------------------------------------------------------------------------
# Merging a folder written by shards (or by an interrupted sweep)
# --------------------------------------------------------------------------------------------------------------


def _manifest(folder: str | Path) -> Config:
    from ..config import load_config

    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise ConfigError(f"--merge {str(folder)!r}: no {MANIFEST} (not a folder written by dmft sweep)")
    return load_config(path)


def complete_kinds(folder: str | Path) -> dict[str, int]:
    """For each kind, how many points of the folder's grid are missing or stale (0: complete)."""
    cfg = _manifest(folder)
    store = PointStore(folder, cfg.model.family)
    pts = points_of(cfg)
    return {k: sum(not store.has(p.cfg, k) for p in pts) for k in KINDS}


def merge(folder: str | Path, kind: str = "solve") -> xr.Dataset:
    """The grid of a sweep folder (``DIR/sweep.toml`` + ``DIR/points``) as one Dataset; every point must be
    saved and current (a one-line :class:`ConfigError` says how many are not, and how to compute them)."""
    if kind not in KINDS:
        raise ConfigError(f"merge kind = {kind!r}: must be 'solve' or 'simulate'")
    cfg = _manifest(folder)
    store = PointStore(folder, cfg.model.family)
    pts = points_of(cfg)
    found: list[xr.Dataset] = []
    missing = stale = 0
    for p in pts:
        got = store.load(p.cfg, kind)
        if got.ds is None:
            missing += got.stale is None
            stale += got.stale is not None
        else:
            found.append(got.ds)
    if missing or stale:
        what = f"{missing} missing" + (f", {stale} stale" if stale else "")
        raise ConfigError(f"--merge {str(folder)!r}: {what} of {len(pts)} points ({kind}); compute them with "
                          f"dmft sweep {Path(folder) / MANIFEST} --out {folder} --kind {kind}")
    return combine(cfg, found, [p.coords for p in pts])

