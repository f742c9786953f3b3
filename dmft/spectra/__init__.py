"""Level 2: bulk laws, outlier singular values from spike Grams, empirical spectra (spectra.md).

From T×T level-1 Grams of one layer (left/right spaces, aspect ratio q = n/m, entry std σ):

>>> out = outliers_over_time(Grams(GtG, GtY, YtY, PhitPhi, PhitZ, ZtZ), C, q, sigma, k_max=4)
>>> out.sv        # (T, k_max) outlier singular values after t steps, NaN where none
>>> out.edge      # (T,) bulk edge σ(1 + √q)
"""

from .bulk import bulk_edge as bulk_edge
from .bulk import mp_atom as mp_atom
from .bulk import mp_cdf as mp_cdf
from .bulk import mp_density as mp_density
from .bulk import mp_edges as mp_edges
from .bulk import mp_expectation as mp_expectation
from .bulk import quarter_circle_density as quarter_circle_density
from .bulk import quarter_circle_edge as quarter_circle_edge
from .bulk import quarter_circle_resolvent as quarter_circle_resolvent
from .bulk import resolvent_m1 as resolvent_m1
from .bulk import resolvent_m2 as resolvent_m2
from .bulk import stieltjes as stieltjes
from .bulk import sv_cdf as sv_cdf
from .bulk import sv_density as sv_density
from .bulk import sv_edges as sv_edges
from .empirical import adaptive_spikes as adaptive_spikes
from .empirical import grams_from_spikes as grams_from_spikes
from .empirical import ks_distance as ks_distance
from .empirical import sample_gaussian as sample_gaussian
from .empirical import singular_values as singular_values
from .empirical import spectral_histogram as spectral_histogram
from .outliers import Grams as Grams
from .outliers import Outliers as Outliers
from .outliers import SpikeProblem as SpikeProblem
from .outliers import bbp_outliers as bbp_outliers
from .outliers import bulk_factors as bulk_factors
from .outliers import gram_consistency as gram_consistency
from .outliers import mask_leading_block as mask_leading_block
from .outliers import naive_bbp_outliers as naive_bbp_outliers
from .outliers import outlier_determinant as outlier_determinant
from .outliers import outlier_singular_values as outlier_singular_values
from .outliers import outliers_over_time as outliers_over_time
from .outliers import reduce_spikes as reduce_spikes
from .outliers import scan_determinant_roots as scan_determinant_roots
