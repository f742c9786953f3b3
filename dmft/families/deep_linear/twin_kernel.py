r"""Twin side of the edge-of-stability check: λ_max of the stability kernel K̃ = γ0²N JJᵀ/P of a finite network
by Lanczos on the Jacobian-free product (edge_of_stability.md §1, §9). Never imports the theory.

The network is the deep linear network of conventions.md §3 (normalised matrices M⁰ = W⁰/√D, M^ℓ = W^ℓ/√N and the
readout w), trained by full-batch GD in the exact rank-one form of deep_linear.md §1. At every step t it records

* ``kernel_top``, ``kernel_second``: the two largest eigenvalues of K̃(t) on the training inputs;
* ``kernel_top_fresh`` (with ``solver.kernel = "fresh" | "both"``): the largest eigenvalue of X′K̂(t)X′ᵀ/P on P
  fresh inputs X′ (a test-set kernel);
* ``train_loss``, ``test_loss``.

Matvec (O(LN² + ND + PD)): a = Xᵀv; e¹ = M⁰a, e^{ℓ+1} = M^ℓe^ℓ; k^L = e^L, k^ℓ = κ_{ℓ+1}e^ℓ + M^ℓᵀk^{ℓ+1};
K̃v = X(κ_1a + ν⁻¹M⁰ᵀk¹)/P, κ_ℓ = |g^ℓ|²/N. Lanczos with full reorthogonalisation, warm-started from the previous
step's top Ritz vector; seeds are vmapped, time is a ``lax.scan``.
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jaxtyping import Array, Float, PRNGKeyArray

import dmft._jax  # noqa: F401  (refuses known-bad JAX versions)
from solvers.linalg import eigh

from ...config import Config
from ...scaling import effective_gamma0, parameterization_code
from ._problem_kernel_names import KERNEL_LONG_NAMES

__all__ = ["KernelTwinSpec", "Net", "spec_from_config", "init_net", "kappas", "kernel_matvec", "lanczos",
           "gd_step", "trajectory", "simulate_kernel"]


class KernelTwinSpec(NamedTuple):
    """Static sizes of one run (hyperparameters are traced separately)."""

    dim: int
    width: int
    depth: int
    samples: int
    steps: int
    lanczos: int = 48
    fresh: bool = True  # also the fresh-input kernel (a second Lanczos run per step)


class Hyper(NamedTuple):
    lr: Array
    gamma0: Array  # effective γ0
    sigma: Array
    sigma_readout: Array
    noise: Array
    teacher_variance: Array


class Net(NamedTuple):
    """Normalised weights: M0 = W⁰/√D (N×D), Mh[ℓ−1] = W^ℓ/√N (L−1, N, N), readout w (N,)."""

    M0: Array
    Mh: Array
    w: Array


def spec_from_config(cfg: Config, dim: int | None = None, fresh: bool | None = None) -> tuple[KernelTwinSpec, Hyper]:
    """Sizes and hyperparameters of one config; ``fresh`` (default: ``solver.kernel`` is "fresh" or "both")
    adds the fresh-input kernel."""
    m, d, o = cfg.model, cfg.data, cfg.optim
    D = dim or cfg.simulate.dim
    N = max(1, round(m.width_ratio * D))
    P = max(1, round(d.alpha * D))
    g = effective_gamma0(m.gamma0, m.width_ratio, parameterization_code(m.parameterization))
    hyper = Hyper(*(jnp.asarray(x, dtype=jnp.float64) for x in (o.lr, g, m.sigma, m.sigma_readout, d.noise,
                                                                  d.teacher_variance)))
    fresh = cfg.solver.kernel != "train" if fresh is None else fresh
    return KernelTwinSpec(D, N, m.depth, P, o.steps, fresh=bool(fresh)), hyper


def init_net(key: PRNGKeyArray, spec: KernelTwinSpec, h: Hyper) -> Net:
    k0, k1, k2 = jax.random.split(key, 3)
    N, D, L = spec.width, spec.dim, spec.depth
    return Net(h.sigma * jax.random.normal(k0, (N, D)) / math.sqrt(D),
               h.sigma * jax.random.normal(k1, (L - 1, N, N)) / math.sqrt(N),
               h.sigma_readout * jax.random.normal(k2, (N,)))


def _backward(net: Net) -> list[Array]:
    """g^1..g^L (g^L = w, g^ℓ = M^ℓᵀg^{ℓ+1}), as a list indexed ℓ − 1."""
    L = net.Mh.shape[0] + 1
    g = [None] * L
    g[L - 1] = net.w
    for ell in range(L - 1, 0, -1):
        g[ell - 1] = net.Mh[ell - 1].T @ g[ell]
    return g


def kappas(net: Net) -> Float[Array, " L"]:
    """κ_ℓ = |g^ℓ|²/N, ℓ = 1..L."""
    return jnp.stack([gl @ gl for gl in _backward(net)]) / net.w.shape[0]


def kernel_matvec(net: Net, x: Float[Array, "P D"], v: Float[Array, " P"], kappa: Array | None = None) -> Array:
    """K̃v = X(κ_1a + ν⁻¹M⁰ᵀk¹)/P with a = Xᵀv, without forming the Jacobian."""
    kappa = kappas(net) if kappa is None else kappa
    N, D = net.M0.shape
    L = net.Mh.shape[0] + 1
    a = x.T @ v
    e = [net.M0 @ a]
    for ell in range(1, L):
        e.append(net.Mh[ell - 1] @ e[-1])
    k = e[L - 1]
    for ell in range(L - 1, 0, -1):  # k^ℓ = κ_{ℓ+1}e^ℓ + M^ℓᵀk^{ℓ+1}
        k = kappa[ell] * e[ell - 1] + net.Mh[ell - 1].T @ k
    return x @ (kappa[0] * a + (D / N) * (net.M0.T @ k)) / x.shape[0]


def lanczos(matvec, v0: Float[Array, " n"], iterations: int) -> tuple[Array, Array]:  # noqa: ANN001
    """Ritz values (descending) and the top Ritz vector of a symmetric operator, by Lanczos with full
    reorthogonalisation (``iterations`` products).

    Breakdown: once the Krylov space is exhausted (``iterations`` above the rank of the operator plus one, e.g.
    K̃ = XK̂Xᵀ/P has rank D < P), the residual is roundoff; continuing with it would add a direction whose couplings
    to the earlier ones the tridiagonal matrix does not hold (spurious Ritz values). The iteration stops there
    (later vectors zero), and the Ritz values are exact on the invariant subspace, padded with zeros."""
    n = v0.shape[0]
    m = iterations
    q0 = v0 / jnp.linalg.norm(v0)

    def body(j: int, s: tuple) -> tuple:
        Q, al, be, q = s
        Q = Q.at[j].set(q)
        w = matvec(q)
        scale = jnp.linalg.norm(w)
        a = q @ w
        w = w - Q.T @ (Q @ w)
        w = w - Q.T @ (Q @ w)
        b = jnp.linalg.norm(w)
        alive = b > 1e-10 * jnp.maximum(scale, jnp.max(jnp.abs(al)))
        b = jnp.where(alive, b, 0.0)
        return Q, al.at[j].set(a), be.at[j].set(b), jnp.where(alive, w / jnp.where(alive, b, 1.0), 0.0)

    Q, al, be, _ = jax.lax.fori_loop(0, m, body, (jnp.zeros((m, n)), jnp.zeros(m), jnp.zeros(m), q0))
    tri = jnp.diag(al) + jnp.diag(be[:-1], 1) + jnp.diag(be[:-1], -1)
    finite = jnp.all(jnp.isfinite(tri))  # a diverged network: never hand LAPACK a non-finite matrix
    vals, vecs = eigh(jnp.where(finite, tri, 0.0))
    return jnp.where(finite, vals[::-1], jnp.nan), jnp.where(finite, Q.T @ vecs[:, -1], v0)


def gd_step(net: Net, x: Array, y: Array, h: Hyper) -> tuple[Net, Array]:
    """One full-batch GD step in the rank-one form of deep_linear.md §1; returns the new net and the train loss."""
    N, D = net.M0.shape
    P = x.shape[0]
    nu = N / D
    eg = h.lr * h.gamma0
    g = _backward(net)
    beta = net.M0.T @ g[0] / (h.gamma0 * nu)
    delta = y - x @ beta / math.sqrt(D)
    qhat = math.sqrt(D) * x.T @ delta / P
    e = [net.M0 @ qhat]
    for ell in range(1, net.Mh.shape[0] + 1):
        e.append(net.Mh[ell - 1] @ e[-1])
    M0 = net.M0 + (eg / D) * jnp.outer(g[0], qhat)
    Mh = jnp.stack([net.Mh[ell - 1] + (eg / N) * jnp.outer(g[ell], e[ell - 1])
                    for ell in range(1, net.Mh.shape[0] + 1)]) if net.Mh.shape[0] else net.Mh
    w = net.w + eg * e[-1]
    return Net(M0, Mh, w), 0.5 * jnp.mean(delta**2)


def _beta(net: Net, h: Hyper) -> Array:
    N, D = net.M0.shape
    return net.M0.T @ _backward(net)[0] / (h.gamma0 * N / D)


@partial(jax.jit, static_argnames=("spec",))
def trajectory(key: PRNGKeyArray, h: Hyper, spec: KernelTwinSpec) -> dict[str, Array]:
    """Train one network for ``spec.steps`` states and record the kernel's top eigenvalues at every step."""
    kt, kn, kx, ke, kf, kl = jax.random.split(key, 6)
    D, P = spec.dim, spec.samples
    beta_star = jax.random.normal(kt, (D,))
    beta_star = beta_star * jnp.sqrt(h.teacher_variance * D) / jnp.linalg.norm(beta_star)
    x = jax.random.normal(kx, (P, D))
    y = x @ beta_star / math.sqrt(D) + h.noise * jax.random.normal(ke, (P,))
    x_fresh = jax.random.normal(kf, (P, D))
    net = init_net(kn, spec, h)

    def top(net: Net, xx: Array, v_prev: Array, k: Array) -> tuple[Array, Array]:
        kap = kappas(net)
        v0 = v_prev + 0.3 * jax.random.normal(k, v_prev.shape) / math.sqrt(P)
        return lanczos(lambda v: kernel_matvec(net, xx, v, kap), v0, spec.lanczos)

    def step(carry: tuple, t: Array) -> tuple[tuple, dict[str, Array]]:
        net, v_tr, v_fr = carry
        k1, k2 = jax.random.split(jax.random.fold_in(kl, t))
        vals, v_tr = top(net, x, v_tr, k1)
        test = 0.5 * (jnp.sum((_beta(net, h) - beta_star) ** 2) / D + h.noise**2)
        new, train = gd_step(net, x, y, h)
        rec = {"kernel_top": vals[0], "kernel_second": vals[1], "train_loss": train, "test_loss": test}
        if spec.fresh:
            vals_f, v_fr = top(net, x_fresh, v_fr, k2)
            rec["kernel_top_fresh"] = vals_f[0]
        return (new, v_tr, v_fr), rec

    v = jnp.ones(P) / math.sqrt(P)
    _, rec = jax.lax.scan(step, (net, v, v), jnp.arange(spec.steps))
    return rec




def simulate_kernel(cfg: Config, dim: int | None = None, seeds: int | None = None, seed: int | None = None,
                    fresh: bool | None = None) -> xr.Dataset:
    """Kernel eigenvalues of ``seeds`` networks (vmapped in chunks of 8) at dimension ``dim`` (defaults: the
    config's ``simulate.*``); variables on (``seed``, ``t``). ``kernel_top_fresh`` when ``fresh`` (default:
    ``solver.kernel`` is "fresh" or "both")."""
    if cfg.optim.batch_ratio is not None:
        raise ValueError("twin kernel: full-batch GD only (optim.batch_ratio is set)")
    spec, h = spec_from_config(cfg, dim, fresh)
    n = seeds or cfg.simulate.seeds
    keys = jax.random.split(jax.random.fold_in(jax.random.key(cfg.simulate.seed if seed is None else seed), 13), n)
    run = jax.vmap(lambda k: trajectory(k, h, spec))
    outs = [jax.device_get(run(keys[i:i + 8])) for i in range(0, n, 8)]
    res = {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
    ds = xr.Dataset({k: (("seed", "t"), v) for k, v in res.items() if k.startswith("kernel")},
                    coords={"seed": np.arange(n), "t": np.arange(spec.steps)},
                    attrs={"dim": spec.dim, "width": spec.width, "samples": spec.samples})
    for k in ds.data_vars:
        ds[k].attrs["long_name"] = KERNEL_LONG_NAMES[k]
    return ds
