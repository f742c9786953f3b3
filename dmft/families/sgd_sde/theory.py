"""``sgd_sde``: SGD as a matrix SDE, Dyson-type singular-value dynamics, stationary laws and the SGD phase
diagram.

Theory (this package): the SDE ensemble forecast (:func:`solve_config`, matrix level by default,
singular-value level with ``solver.level = "singular_values"``) plus the closed-form laws
(:mod:`._stationary`) and the phase criterion (:mod:`._phase`). The twin (real minibatch SGD on the same
instances) is :mod:`dmft.families.sgd_sde.twin`; both import the problem definition (instances, drifts, recorded
steps, measurements, Dataset) from :mod:`dmft.families.sgd_sde.problem`. Fits of spectra (tail exponents, level
spacings, gamma MLE) are in
:mod:`dmft.spectra.fits`.

Array-level entry points (pure, jit/vmap-able, float64): :func:`integrate_matrix_sde`,
:func:`integrate_sv_sde`, :func:`sv_drift`, :func:`phase_criterion`, :func:`sde_ensemble`.
"""

from ._matrix import diffusion_coefficient as diffusion_coefficient
from ._matrix import integrate_matrix_sde as integrate_matrix_sde
from ._phase import PHASES as PHASES
from ._phase import classify as classify
from ._phase import jammed_boundary as jammed_boundary
from ._phase import phase_criterion as phase_criterion
from ._phase import phase_observables as phase_observables
from ._phase import soft_spin_pdf as soft_spin_pdf
from ._singular import integrate_sv_sde as integrate_sv_sde
from ._singular import sv_drift as sv_drift
from ._solve import sde_ensemble as sde_ensemble
from ._solve import solve_batch as solve_batch
from ._solve import solve_config as solve_config
from ._stationary import gamma_1d_law as gamma_1d_law
from ._stationary import gamma_sv_pdf as gamma_sv_pdf
from ._stationary import gamma_type_law as gamma_type_law
from ._stationary import laguerre_stationary as laguerre_stationary
from ._stationary import mp_eigen_cdf as mp_eigen_cdf
from ._stationary import mp_eigen_pdf as mp_eigen_pdf
from ._stationary import mp_sv_edges as mp_sv_edges
from ._stationary import mp_sv_pdf as mp_sv_pdf
from ._stationary import noise_sum_sq as noise_sum_sq
from ._stationary import radial_stationary_pdf as radial_stationary_pdf
from ._stationary import sgd_teacher_error as sgd_teacher_error
from .problem import DRIFTS as DRIFTS
from .problem import Drift as Drift
from .problem import Hyper as Hyper
from .problem import Problem as Problem
from .problem import make_problem as make_problem
from .problem import noise_key as noise_key
from .problem import problem_key as problem_key
