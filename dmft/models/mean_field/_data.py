"""The data set of the mean-field family (conventions.md §2, §4): P training and Q test pairs, from a teacher or a file.

Synthetic data (``data.file`` unset): x ~ N(0, I_D), teacher β*_a ~ N(0, ρ*) (ρ* = ``data.teacher_variance``),
clean label y = β*·x/√D (``data.teacher = "linear"``) or tanh(β*·x/√D) (``"tanh"``), plus label noise
ε ~ N(0, σ_ε²) on training and test labels, all from the key ``data.seed``. The theory and the twin call
:func:`make_dataset` with the same config, so both see exactly the same points.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ...config import Config, ConfigError

__all__ = ["MeanFieldData", "make_dataset", "synthetic_dataset", "load_npz", "input_gram"]


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
