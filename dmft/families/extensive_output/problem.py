r"""The extensive-output problem: model, scaling, data, teacher and initialization (extensive_outputs.md §2).

Depth-1 linear network with C = κD outputs, in normalized matrices V = W_out/√D (C×N), M = W⁰/√D (N×D),
B = B*/√D (C×D):

    f(x) = A x,   A = V M/(γ0 ν),   y = B x + ε,   loss ½P⁻¹ Σ_μ |f_μ − y_μ|²  (mean over samples, sum over channels)

Every parameter steps by −ηγ0²N ∂L/∂θ (μP: γ0 fixed; NTK: γ0 = γ̃0/√ν, :mod:`dmft.scaling`); with a = ηγ0,
Σ̂ = XᵀX/P and Ẽ = EX/P one GD step is

    Q = (B − A)Σ̂ + Ẽ   (population: Q = B − A),     V ← V + a Q Mᵀ,     M ← M + a VᵀQ

(frozen readout: V stays). This module is the only one that theory and twin share besides :mod:`dmft.scaling`.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from dmft.scaling import applied_lr, effective_gamma0, parameterization_code

from ._keys import ExtensiveOutputSection

__all__ = [
    "Hyper",
    "Problem",
    "Sizes",
    "section_of",
    "params_from_config",
    "sizes_from_config",
    "sv_scale",
    "initial_test_loss",
    "sample_teacher",
    "sample_data",
    "sample_init",
    "sample_init_gram",
    "SECTION",
    "solver_of",
    "check_config",
]

SECTION = "extensive_output"


class Hyper(NamedTuple):
    """Scalar hyperparameters (a pytree of floats: vmap over any of them).

    ``gamma0`` is the *effective* γ0 (after the μP/NTK rule); ``alpha`` is ``inf`` for the population loss.
    """

    lr: float  # η
    gamma0: float  # effective γ0
    nu: float  # ν = N/D
    kappa: float  # κ = C/D
    sigma: float  # σ
    sigma_w: float  # σ_w
    rho: float  # ρ*
    noise: float  # σ_ε (0 for the population loss)
    alpha: float  # α = P/D (inf: population)


class Problem(NamedTuple):
    """One config resolved: hyperparameters, the family section, and the run options."""

    hyper: Hyper
    section: ExtensiveOutputSection
    ntk: bool
    steps: int  # T
    frozen: bool
    population: bool
    dim: int  # D of the twin
    every: int | None  # spectrum stride (simulate.spectrum_every)
    seeds: int
    seed: int
    divergence_threshold: float


class Sizes(NamedTuple):
    """Static sizes of one finite network (hashable: the twin compiles per size)."""

    dim: int  # D
    width: int  # N
    outputs: int  # C
    samples: int  # P (0: population)
    steps: int  # T
    frozen: bool


def section_of(cfg: Any, section: ExtensiveOutputSection | None = None) -> ExtensiveOutputSection:
    """The ``[extensive_output]`` values of ``cfg``: ``section`` if given, else ``cfg.get("extensive_output.k")``
    for every key the config knows (defaults for the others, while the config does not carry the section yet)."""
    if section is not None:
        return section
    sec = getattr(cfg, SECTION, None)
    if isinstance(sec, ExtensiveOutputSection):
        return sec
    values = {}
    for f in fields(ExtensiveOutputSection):
        try:
            values[f.name] = cfg.get(f"{SECTION}.{f.name}")
        except Exception:  # noqa: BLE001  (key not known to this config: default)
            continue
    return ExtensiveOutputSection(**values)


def params_from_config(cfg: Any, section: ExtensiveOutputSection | None = None) -> Problem:
    """Map a config to the problem, applying the μP/NTK rule once (:func:`dmft.scaling.effective_gamma0`)."""
    sec = section_of(cfg, section)
    m, d, o, s = cfg.model, cfg.data, cfg.optim, cfg.simulate
    ntk = bool(parameterization_code(m.parameterization))
    g = float(effective_gamma0(m.gamma0, m.width_ratio, float(ntk)))
    kappa = sec.outputs / s.dim if sec.outputs is not None else sec.outputs_ratio
    alpha = math.inf if sec.population else float(d.alpha)
    noise = 0.0 if sec.population else float(d.noise)
    hyper = Hyper(
        float(o.lr), g, float(m.width_ratio), float(kappa), float(m.sigma), float(m.sigma_readout),
        float(d.teacher_variance), noise, alpha,
    )
    return Problem(
        hyper, sec, ntk, int(o.steps), sec.readout == "frozen", bool(sec.population), int(s.dim),
        s.spectrum_every, int(s.seeds), int(s.seed), float(cfg.solver.divergence_threshold),
    )


def sizes_from_config(prob: Problem, dim: int | None = None) -> Sizes:
    """Sizes of the twin at input dimension ``dim`` (default: ``simulate.dim``): N = round(νD), C = round(κD)
    (or the fixed ``outputs``), P = round(αD) (0 for the population loss)."""
    D = prob.dim if dim is None else int(dim)
    h = prob.hyper
    N = max(1, round(h.nu * D))
    C = prob.section.outputs if prob.section.outputs is not None else max(1, round(h.kappa * D))
    P = 0 if prob.population else max(1, round(h.alpha * D))
    return Sizes(D, N, int(C), P, prob.steps, prob.frozen)


def sv_scale(units: str, nu: float) -> float:
    """Factor from singular values of M⁰ = W⁰/√D to the reported units: 1 (``input``) or ν^{-1/2} (``width``,
    singular values of W⁰/√N)."""
    return 1.0 if units == "input" else 1.0 / math.sqrt(nu)


def initial_test_loss(h: Hyper) -> float:
    """Per-channel test loss at t = 0: ½(ρ* + σ²σ_w²/(γ0²ν) + σ_ε²) (§2; the L = 1 value of deep_linear §8)."""
    return 0.5 * (h.rho + h.sigma**2 * h.sigma_w**2 / (h.gamma0**2 * h.nu) + h.noise**2)


def raw_rate(h: Hyper, width: int) -> Any:
    """The raw SGD step ηγ0²N of every parameter (:func:`dmft.scaling.applied_lr`)."""
    return applied_lr(h.lr, h.gamma0, width)


# ------------------------------------------------------------------------------------------------------------
# Sampling (explicit keys; the twin's draws)
# ------------------------------------------------------------------------------------------------------------


def sample_teacher(key: PRNGKeyArray, outputs: int, dim: int, rho: Any) -> Float[Array, "C D"]:
    """B = B*/√D with rows B*_c uniform on the sphere |B*_c|² = ρ*D (Gaussian rows normalized, as the deep-linear
    twin does: removes the O(D^{-1/2}) per-channel norm fluctuation that dominates single-channel loss noise)."""
    g = jax.random.normal(key, (outputs, dim))
    return jnp.sqrt(rho) * g / jnp.linalg.norm(g, axis=1, keepdims=True)


def sample_data(
    key: PRNGKeyArray, samples: int, outputs: int, dim: int, noise: Any
) -> tuple[Float[Array, "P D"], Float[Array, "C P"]]:
    """Inputs X (P×D, iid N(0, 1)) and label noise E (C×P, iid N(0, σ_ε²))."""
    kx, ke = jax.random.split(key)
    return jax.random.normal(kx, (samples, dim)), noise * jax.random.normal(ke, (outputs, samples))


def sample_init(
    key: PRNGKeyArray, width: int, outputs: int, dim: int, sigma: Any, sigma_w: Any
) -> tuple[Float[Array, "C N"], Float[Array, "N D"]]:
    """V = W_out/√D and M = W⁰/√D with W_out ~ N(0, σ_w²), W⁰ ~ N(0, σ²) entrywise."""
    kv, km = jax.random.split(key)
    scale = 1.0 / math.sqrt(dim)
    return (sigma_w * scale * jax.random.normal(kv, (outputs, width)),
            sigma * scale * jax.random.normal(km, (width, dim)))


def sample_init_gram(
    key: PRNGKeyArray, width: Any, outputs: int, dim: int, sigma: Any, sigma_w: Any, bartlett: bool | None = None
) -> Float[Array, "p p"]:
    """ZᵀZ with Z = [Vᵀ, M] (N×(C+D)): a Wishart matrix with N degrees of freedom and covariance
    diag(σ_w² I_C, σ² I_D)/D, drawn by the Bartlett decomposition when N ≥ C + D (cost O((C+D)³), independent
    of N), else from Z itself. Blocks: [[h, γ0νA], [γ0νAᵀ, k]].

    ``bartlett=True`` takes the Bartlett route with ``width`` possibly a traced number (N ≥ C + D is then the
    caller's promise): one compiled program serves every width."""
    p = outputs + dim
    scale = jnp.concatenate([jnp.full(outputs, sigma_w), jnp.full(dim, sigma)]) / math.sqrt(dim)
    if bartlett is None:
        bartlett = width >= p
    if not bartlett:
        z = jax.random.normal(key, (width, p)) * scale[None, :]
        return z.T @ z
    kc, kn = jax.random.split(key)
    dof = width - jnp.arange(p, dtype=jnp.float64)
    diag = jnp.sqrt(2.0 * jax.random.gamma(kc, dof / 2.0))
    low = jnp.tril(jax.random.normal(kn, (p, p)), -1)
    lmat = low + jnp.diag(diag)
    w = lmat @ lmat.T
    return scale[:, None] * w * scale[None, :]


def solver_of(prob: Problem) -> str:
    """The theory solver a config selects (``extensive_output.theory``; auto: dyson when the readout is frozen,
    infinite_width for full GD in width units, extrapolate otherwise)."""
    th = prob.section.theory
    if th != "auto":
        return th
    if prob.frozen:
        return "dyson"
    return "infinite_width" if (prob.section.units == "width" and prob.population) else "extrapolate"


def check_config(cfg: Any, section: ExtensiveOutputSection | None = None) -> None:
    """Cross-key rules; raises :class:`dmft.config.ConfigError` naming the keys."""
    from dmft.config import ConfigError

    prob = params_from_config(cfg, section)
    sec = prob.section
    solver = solver_of(prob)
    if solver == "dyson" and not prob.frozen:
        raise ConfigError(
            "extensive_output.theory = 'dyson': the Dyson equation is exact for a frozen readout only "
            "(extensive_output.readout = 'frozen'); full GD at finite ν has no exact theory — use 'extrapolate', "
            "or 'infinite_width' for ν = ∞"
        )
    if solver == "infinite_width":
        if prob.frozen:
            raise ConfigError("extensive_output.theory = 'infinite_width': needs extensive_output.readout = 'trained'")
        if not prob.population:
            raise ConfigError("extensive_output.theory = 'infinite_width': needs extensive_output.population = true")
        if sec.units != "width":
            raise ConfigError(
                "extensive_output.units = 'input': singular values of W⁰/√D diverge at ν = ∞; the infinite_width "
                "theory needs extensive_output.units = 'width' (W⁰/√N)"
            )
    if sec.twin_form == "gram" and not prob.population and prob.hyper.alpha * prob.dim < 1:
        raise ConfigError(f"data.alpha = {prob.hyper.alpha}: P = αD must be >= 1")
    if sec.extrapolate_seeds is not None and len(sec.extrapolate_seeds) != len(sec.extrapolate_dims):
        raise ConfigError(
            f"extensive_output.extrapolate_seeds = {list(sec.extrapolate_seeds)}: needs one entry per "
            f"extensive_output.extrapolate_dims = {list(sec.extrapolate_dims)}"
        )
    if solver == "extrapolate" and len(set(sec.extrapolate_dims)) < 2:
        raise ConfigError("extensive_output.extrapolate_dims: needs at least 2 distinct sizes")
