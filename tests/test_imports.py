"""Import hygiene: no cycles, theory and twin independent, no global state changed by importing the library."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("dmft", "solvers")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path, top_level_only: bool) -> set[str]:
    """Absolute names of the project modules that ``name`` imports (``from x import y`` counts y if a module)."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if top_level_only and isinstance(node, ast.If):  # `if TYPE_CHECKING:` blocks do not run
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                mod = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in MODULES:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def _role(module: str) -> tuple[str, str] | None:
    """(family, role) for modules of a family package: role twin / problem / theory / other."""
    parts = module.split(".")
    if len(parts) < 4 or parts[:2] != ["dmft", "families"]:
        return None
    family, leaf = parts[2], parts[3]
    if leaf.startswith(("twin", "_twin")):
        return family, "twin"
    if leaf.startswith(("problem", "_problem", "keys", "_keys")):  # problem definition and config keys: shared
        return family, "problem"
    if leaf in ("figures",):
        return family, "other"
    return family, "theory"


def test_theory_and_twin_never_import_each_other() -> None:
    bad = []
    for name, path in MODULES.items():
        role = _role(name)
        if role is None or role[1] not in ("twin", "theory", "problem"):
            continue
        for dep in _imports(name, path, top_level_only=False):
            dep_role = _role(dep)
            if dep_role is None:
                continue
            if dep_role[0] != role[0] and dep_role[1] != "problem":
                bad.append(f"{name} -> {dep} (another family's {dep_role[1]})")
            elif role[1] == "twin" and dep_role[1] == "theory":
                bad.append(f"{name} -> {dep}")
            elif role[1] == "theory" and dep_role[1] == "twin":
                bad.append(f"{name} -> {dep}")
            elif role[1] == "problem" and dep_role[1] in ("theory", "twin"):
                bad.append(f"{name} -> {dep} (problem definitions import neither)")
    assert not bad, "\n".join(bad)


def test_solvers_never_import_dmft() -> None:
    bad = [(n, d) for n, p in MODULES.items() if n.startswith("solvers") for d in _imports(n, p, False)
           if d.startswith("dmft")]
    assert not bad


def test_no_import_cycle_at_module_level() -> None:
    graph = {n: _imports(n, p, top_level_only=True) for n, p in MODULES.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for d in sorted(graph.get(n, ())):
            # a package's __init__ is imported before its submodules: an edge to the parent package is not a cycle
            if n.startswith(d + "."):
                continue
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if state.get(d) is None and (cycle := visit(d)):
                return cycle
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if state.get(n) is None and (cycle := visit(n)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


_FRESH = r"""
import importlib, json, os, sys
names = json.loads(sys.argv[1])
import jax  # shared, so that each project module is imported afresh cheaply
failed = {}
for name in names:
    for m in [m for m in sys.modules if m.split(".")[0] in ("dmft", "solvers")]:
        del sys.modules[m]
    try:
        importlib.import_module(name)
    except Exception as e:  # noqa: BLE001
        failed[name] = f"{type(e).__name__}: {e}"
print(json.dumps(failed))
"""


def test_every_module_imports_on_its_own() -> None:
    """Each module imported first, with no other project module loaded (catches cycles hidden by import order)."""
    out = subprocess.run(
        [sys.executable, "-c", _FRESH, json.dumps(sorted(MODULES))], capture_output=True, text=True, cwd=ROOT,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    failed = json.loads(out.stdout.strip().splitlines()[-1])
    assert not failed, failed


_STATE = r"""
import json, os, sys
import jax
from threadpoolctl import threadpool_info  # the test's own probe (it sets KMP_DUPLICATE_LIB_OK on import)
before_env = dict(os.environ)
before = {k: getattr(jax.config, k) for k in ("jax_enable_x64", "jax_default_matmul_precision", "jax_platforms")}
import dmft, dmft.api, dmft.families, dmft.plot, dmft.spectra
from dmft.families import REGISTRY
for fam in REGISTRY:
    __import__(f"dmft.families.{fam}.theory"); __import__(f"dmft.families.{fam}.twin")
after = {k: getattr(jax.config, k) for k in before}
heavy = [m for m in ("matplotlib", "xarray") if m in sys.modules]
blas_before = [i["num_threads"] for i in threadpool_info()]
cfg = dmft.load_config(None, overrides={"optim.steps": 4, "simulate.dim": 16, "simulate.seeds": 2})
ds = dmft.solve(cfg)
sim = dmft.simulate(cfg)  # host callbacks (LAPACK via NumPy) must see float64 too
blas_after = [i["num_threads"] for i in threadpool_info()]
print(json.dumps({
    "env_changed": sorted(set(os.environ.items()) ^ set(before_env.items())),
    "flags_changed": {k: [before[k], after[k]] for k in before if before[k] != after[k]},
    "x64_after_solve": bool(jax.config.jax_enable_x64),
    "dtype": str(ds["test_loss"].dtype),
    "twin_dtype": str(sim["spectrum"].dtype),
    "blas_restored": blas_before == blas_after,
}))
"""


def test_importing_the_library_changes_no_global_state() -> None:
    """No environment variable and no JAX flag change on import; solves run in float64 and leave x64 as it was."""
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("OPENBLAS_NUM_THREADS", "JAX_ENABLE_X64")}
    out = subprocess.run([sys.executable, "-c", _STATE], capture_output=True, text=True, cwd=ROOT, env=env,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["env_changed"] == [], report
    assert report["flags_changed"] == {}, report
    assert report["x64_after_solve"] is False
    assert report["dtype"] == "float64" and report["twin_dtype"] == "float64"
    assert report["blas_restored"]


def test_light_import() -> None:
    """`import dmft` and the registry load no JAX, matplotlib or xarray."""
    code = ("import sys, dmft, dmft.families, dmft.config; "
            "print([m for m in ('jax', 'matplotlib', 'xarray') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_array_level_solver_refuses_float32() -> None:
    """Without float64 the array-level solvers say in one line how to turn it on (never silently float32)."""
    code = ("import jax; from dmft.families.deep_linear import theory as t; import dmft\n"
            "cfg = dmft.load_config(None)\n"
            "try:\n    t.solve(t.params_from_config(cfg), 4, 2)\nexcept RuntimeError as e:\n    print('ERR', e)")
    env = {k: v for k, v in __import__("os").environ.items() if k != "JAX_ENABLE_X64"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                         timeout=300)
    assert "ERR" in out.stdout and "jax_enable_x64" in out.stdout, (out.stdout, out.stderr[-1000:])
