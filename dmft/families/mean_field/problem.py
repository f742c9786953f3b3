"""The problem definition of the mean-field family, shared by the theory and the twin (conventions.md §2, §4).

* **Activations** (``model.activation``): :data:`ACTIVATIONS`, :func:`activation`.
* **Data**: P training and Q test pairs, from a teacher or a file. Synthetic data (``data.file`` unset):
  x ~ N(0, I_D), teacher β*_a ~ N(0, ρ*) (ρ* = ``data.teacher_variance``), clean label y = β*·x/√D
  (``data.teacher = "linear"``) or tanh(β*·x/√D) (``"tanh"``), plus label noise ε ~ N(0, σ_ε²) on training and test
  labels, all from the key ``data.seed``. Theory and twin call :func:`make_dataset` with the same config, so both
  see exactly the same points.
* **Parameters**: :func:`gamma0_of` (the γ0 the network uses: the μP/NTK rule of :func:`dmft.scaling.effective_gamma0`
  with the twin's width N), :func:`spectrum_steps` (the steps at which level 2 / the twin's top singular values are
  recorded: :func:`dmft.results.record_steps` every ``simulate.spectrum_every`` steps, last step included).
* **Observables defined on outputs**: the population test loss of a linear student on a synthetic teacher
  (:func:`population_points`, :func:`population_test_loss`), the kernel alignment (:func:`kernel_alignment`) and
  the sharpness λ_max(K(t)/P) on the training points (:func:`stability_sharpness`).
  With Q = ``data.test_points`` = 0, linear φ and a synthetic teacher the population loss ½E(f(x) − y)² over a
  fresh pair is exact because f(x) = v(t)·x/√D is linear in x; v is read off the outputs at the auxiliary inputs
  √D e_a (a = 1..D), which do not drive learning, and

      ½E(f − y)² = ½(|v|²/D − 2E[f y_clean] + E[y_clean²] + σ_ε²),
      linear teacher: E[f y] = v·β*/D, E[y²] = |β*|²/D;  tanh teacher: E[f y] = (v·β*/D)E[1 − tanh²(w)],
      E[y²] = E[tanh²(w)], w ~ N(0, |β*|²/D) (Stein's lemma; Gauss–Hermite).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ...config import Config, ConfigError
from ...results import record_steps
from ...scaling import effective_gamma0

__all__ = [
    "ACTIVATIONS", "activation", "MeanFieldData", "make_dataset", "synthetic_dataset", "load_npz", "input_gram",
    "gamma0_of", "spectrum_steps", "PopulationPoints", "population_points", "population_test_loss",
    "MAX_POPULATION_DIM", "kernel_alignment", "stability_sharpness", "common_coords",
]

MAX_POPULATION_DIM = 512  # largest D for which the population test loss is computed (D auxiliary points)

# ------------------------------------------------------------------------------------------------------------
# Activations
# ------------------------------------------------------------------------------------------------------------

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "linear": lambda h: h,
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "erf": jax.scipy.special.erf,
}


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """φ for ``model.activation = name``; derivatives by ``jax.grad`` / ``jax.jvp`` (φ′(0) = 0 for ReLU)."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"model.activation = {name!r}: must be one of {', '.join(ACTIVATIONS)}") from None


# ------------------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------------------


class MeanFieldData(NamedTuple):
    """Training and test pairs; ``beta_star`` is the teacher (None for data from a file)."""

    x_train: Float[Array, "P D"]
    y_train: Float[Array, " P"]
    x_test: Float[Array, "Q D"]
    y_test: Float[Array, " Q"]
    beta_star: Float[Array, " D"] | None
    teacher: str | None  # "linear" | "tanh" | None (file)
    noise: float

    @property
    def x_all(self) -> Float[Array, "M D"]:
        """The M = P + Q inputs, training points first."""
        return jnp.concatenate([self.x_train, self.x_test], axis=0)


def input_gram(x: Float[Array, "M D"]) -> Float[Array, "M M"]:
    """K^x_{μν} = x_μ·x_ν/D."""
    return x @ x.T / x.shape[1]


def synthetic_dataset(
    key: jax.Array, *, points: int, test_points: int, input_dim: int, teacher: str = "linear",
    teacher_variance: float = 1.0, noise: float = 0.0,
) -> MeanFieldData:
    """Teacher–student data (module docstring)."""
    kb, kx, kxt, ke, ket = jax.random.split(key, 5)  # separate streams: the training set does not depend on Q
    d = input_dim
    beta = jnp.sqrt(teacher_variance) * jax.random.normal(kb, (d,))

    def pairs(k1: jax.Array, k2: jax.Array, n: int) -> tuple[Array, Array]:
        x = jax.random.normal(k1, (n, d))
        pre = x @ beta / jnp.sqrt(d)
        clean = pre if teacher == "linear" else jnp.tanh(pre)
        return x, clean + noise * jax.random.normal(k2, (n,))

    x, y = pairs(kx, ke, points)
    xt, yt = pairs(kxt, ket, test_points)
    return MeanFieldData(x, y, xt, yt, beta, teacher, float(noise))


def load_npz(path: str | Path) -> MeanFieldData:
    """x_train (P, D), y_train (P,) and optionally x_test (Q, D), y_test (Q,) from a .npz file.

    Raises :class:`ConfigError` (one line: key, path, what is wrong) when the file is unreadable or the arrays
    are missing, non-finite or of inconsistent shapes.
    """
    p = Path(path)

    def bad(what: str) -> ConfigError:
        return ConfigError(f"data.file = {str(p)!r}: {what}")

    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: np.asarray(z[k], dtype=float) for k in z.files}
    except FileNotFoundError:
        raise bad("file not found") from None
    except (OSError, ValueError) as e:
        raise bad(f"not a readable .npz file ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    for k in ("x_train", "y_train"):
        if k not in arrays:
            raise bad(f"missing array {k!r} (found: {', '.join(sorted(arrays)) or 'none'})")
    xtr, ytr = arrays["x_train"], arrays["y_train"]
    if xtr.ndim != 2 or xtr.shape[0] < 1 or xtr.shape[1] < 1:
        raise bad(f"x_train must have shape (P, D), got {xtr.shape}")
    if ytr.shape != (xtr.shape[0],):
        raise bad(f"y_train must have shape ({xtr.shape[0]},) to match x_train, got {ytr.shape}")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise bad("x_test and y_test must be given together")
    d = xtr.shape[1]
    xte = arrays.get("x_test", np.zeros((0, d)))
    yte = arrays.get("y_test", np.zeros((0,)))
    if xte.ndim != 2 or xte.shape[1] != d:
        raise bad(f"x_test must have shape (Q, {d}), got {xte.shape}")
    if yte.shape != (xte.shape[0],):
        raise bad(f"y_test must have shape ({xte.shape[0]},) to match x_test, got {yte.shape}")
    for k, a in (("x_train", xtr), ("y_train", ytr), ("x_test", xte), ("y_test", yte)):
        if not np.all(np.isfinite(a)):
            raise bad(f"{k} has non-finite entries")
    return MeanFieldData(*(jnp.asarray(a) for a in (xtr, ytr, xte, yte)), None, None, 0.0)


def make_dataset(cfg: Config) -> MeanFieldData:
    """The data set of a config: ``data.file`` if given, else the synthetic teacher with ``data.seed``."""
    d = cfg.data
    if d.file is not None:
        return load_npz(d.file)
    return synthetic_dataset(
        jax.random.key(d.seed), points=d.points, test_points=d.test_points, input_dim=d.input_dim,
        teacher=d.teacher, teacher_variance=d.teacher_variance, noise=d.noise,
    )


# ------------------------------------------------------------------------------------------------------------
# Parameters and recorded steps
# ------------------------------------------------------------------------------------------------------------


def gamma0_of(cfg: Config) -> float:
    """γ0 of the network: ``model.gamma0`` (μP) or γ̃0/√N with N = ``simulate.width`` (NTK)."""
    m = cfg.model
    return float(effective_gamma0(m.gamma0, cfg.simulate.width, m.parameterization))


def spectrum_steps(cfg: Config) -> np.ndarray:
    """Steps at which outliers (theory) and top singular values (twin) are recorded: every
    ``simulate.spectrum_every`` steps from 0 (default: about 5 records), and the last step."""
    return record_steps(cfg.optim.steps, cfg.simulate.spectrum_every)


# ------------------------------------------------------------------------------------------------------------
# Observables
# ------------------------------------------------------------------------------------------------------------


class PopulationPoints(NamedTuple):
    x: jax.Array  # (D, D): √D e_a


def population_points(cfg: Config, data: MeanFieldData) -> PopulationPoints | None:
    """Auxiliary inputs for the population test loss (module docstring), or None where it does not apply."""
    d = data.x_train.shape[1]
    if (data.beta_star is None or data.x_test.shape[0] > 0 or cfg.model.activation != "linear"
            or d > MAX_POPULATION_DIM):
        return None
    return PopulationPoints(jnp.sqrt(d) * jnp.eye(d))


def population_test_loss(f: np.ndarray, data: MeanFieldData, aux: PopulationPoints) -> np.ndarray:
    """½E(f(x) − y)² over fresh pairs from the outputs f (..., T, M_all) whose last D columns are at √D e_a."""
    d = aux.x.shape[0]
    v = np.asarray(f)[..., -d:]
    beta = np.asarray(data.beta_star)
    vb = v @ beta / d
    vv = np.sum(v**2, axis=-1) / d
    rho = float(beta @ beta / d)
    if data.teacher == "linear":
        fy, yy = vb, rho
    else:
        z, w = np.polynomial.hermite_e.hermegauss(80)
        w = w / w.sum()
        th = np.tanh(np.sqrt(rho) * z)
        fy, yy = vb * float(w @ (1 - th**2)), float(w @ th**2)
    return 0.5 * (vv - 2 * fy + yy + data.noise**2)


def kernel_alignment(k: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A(t) = yᵀK(t)y / (‖K(t)‖_F |y|²) on the training points (1 when K ∝ yyᵀ)."""
    num = np.einsum("...mn,m,n->...", k, y, y)
    return num / (np.linalg.norm(k, axis=(-2, -1)) * (y @ y))


def stability_sharpness(k: Float[np.ndarray, "... M M"], n_train: int) -> Float[np.ndarray, " ..."]:
    """Sharpness λ_max(K̃) of the stability kernel K̃ = K[:P, :P]/P (the first P points are the training points).

    The output update f(t+1) = f(t) + (η/P)K(t)Δ(t) is linearly stable while η·λ_max(K̃(t)) < 2 (spectra.md §10;
    K = γ0²N JJᵀ, so this is the Gauss–Newton sharpness). NaN where K has a non-finite entry (masked steps).
    """
    kt = np.asarray(k, dtype=float)[..., :n_train, :n_train] / n_train
    ok = np.all(np.isfinite(kt), axis=(-2, -1))
    kt = np.where(ok[..., None, None], 0.5 * (kt + np.swapaxes(kt, -1, -2)), 0.0)
    return np.where(ok, np.linalg.eigvalsh(kt)[..., -1], np.nan)


def common_coords(cfg: Config, data: MeanFieldData) -> dict:
    """Coordinates shared by the theory and the twin Datasets."""
    P, Q = data.x_train.shape[0], data.x_test.shape[0]
    return {"t": np.arange(cfg.optim.steps), "point": np.arange(P + Q), "point2": np.arange(P + Q),
            "layer_phi": np.arange(1, cfg.model.depth + 1)}
