"""μP networks at infinite width with finite data (``family = "mean_field"``, shared/theory/mean_field.md).

A depth-L network h¹ = W⁰x/√D, h^{ℓ+1} = W^ℓφ(h^ℓ)/√N, f = w·φ(h^L)/(γ0N) trained by full-batch GD on P fixed
points, at N → ∞. Theory: the kernel DMFT, in closed form for linear φ (:func:`solve_linear`) and by Monte Carlo
otherwise (``_monte_carlo.solve_monte_carlo``); level 2: outlier singular values of the hidden matrices
(:mod:`._spectra`). Twin: :mod:`dmft.families.mean_field.twin`; shared problem definition (data, activations,
γ0 rule, recorded steps): :mod:`dmft.families.mean_field.problem`.

Public API:

* :func:`solve_config`: config → Dataset (theory, outliers, diagnostics);
* array level: :func:`solve_linear`, :func:`march_linear`, :func:`initial_kernels`, :func:`lazy_oracle`,
  :func:`linear_grams`, :func:`hidden_layer_outliers`, :func:`make_dataset`;
"""

from ._kernels import initial_kernels as initial_kernels
from ._kernels import linear_kappa as linear_kappa
from ._lazy import lazy_oracle as lazy_oracle
from ._linear import LinearState as LinearState
from ._linear import march_linear as march_linear
from ._linear import solve_linear as solve_linear
from ._solve import solve_arrays as solve_arrays
from ._solve import solve_config as solve_config
from ._spectra import hidden_layer_outliers as hidden_layer_outliers
from ._spectra import linear_grams as linear_grams
from ._spectra import linear_outliers as linear_outliers
from ._types import MeanFieldSolution as MeanFieldSolution
from .problem import ACTIVATIONS as ACTIVATIONS
from .problem import MeanFieldData as MeanFieldData
from .problem import input_gram as input_gram
from .problem import make_dataset as make_dataset
