"""Diagonal linear networks (``family = "diagonal_linear"``, shared/theory/diagonal_linear.md).

β = u⊙v or u₊⊙u₊ − u₋⊙u₋ trained by full-batch GD on Gaussian teacher–student data, in the proportional limit
D → ∞ at α = P/D. The theory is the DMFT of a sample site (closed form) and a coordinate site (Monte Carlo
over S samples, scanned over time, responses by exact tangents or Stein); the twin is
:mod:`dmft.families.diagonal_linear.twin`.

Public API:

* :func:`solve_config`, :func:`solve_batch`: config(s) → Dataset (theory, MC errors, oracles, diagnostics);
* :func:`causal_solve`, :func:`picard_solve`: the array-level solvers (jit/vmap-able);
* oracles: :func:`t1_test_loss`, :func:`lazy_curves`, :func:`population_curve`, :func:`fixed_point`,
  :func:`late_time_rate`, :func:`escape_time`, :func:`small_init_curve`, :func:`small_init_limit`;
* :func:`figures`, :func:`sweep_figures`.
"""

from ._dmft import Solution as Solution
from ._dmft import causal_solve as causal_solve
from ._dmft import picard_solve as picard_solve
from ._oracles import FixedPoint as FixedPoint
from ._oracles import escape_time as escape_time
from ._oracles import fixed_point as fixed_point
from ._oracles import late_time_rate as late_time_rate
from ._oracles import lazy_curves as lazy_curves
from ._oracles import population_curve as population_curve
from ._oracles import prox_hyperbolic as prox_hyperbolic
from ._oracles import small_init_curve as small_init_curve
from ._oracles import small_init_limit as small_init_limit
from ._oracles import t1_test_loss as t1_test_loss
from ._solve import solve_arrays as solve_arrays
from ._solve import solve_batch as solve_batch
from ._solve import solve_config as solve_config
from .problem import FORMS as FORMS
from .problem import Form as Form
from .problem import Params as Params
from .problem import params_from_config as params_from_config
from .problem import sample_teacher as sample_teacher
from .problem import snapshot_steps as snapshot_steps
