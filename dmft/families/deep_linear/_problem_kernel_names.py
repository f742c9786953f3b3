"""Long names of the stability-kernel (edge-of-stability) result variables, theory and twin (no JAX import)."""

from __future__ import annotations

KERNEL_LONG_NAMES: dict[str, str | tuple[str, str]] = {
    "sharpness": "λ_max of the stability kernel K̃ = γ0²N JJᵀ/P on the training inputs",
    "kernel_edge": "bulk edge of the stability kernel K̃(t) (theory)",
    "kernel_outliers": "outlier eigenvalues of K̃(t) above its bulk edge, largest first (theory; NaN: none)",
    "sharpness_fresh": "λ_max of the fresh-input kernel X′K̂X′ᵀ/P (theory)",
    "kernel_outliers_fresh": "outlier eigenvalues of the fresh-input kernel, largest first (theory; NaN: none)",
    "kernel_evaluated": "the stability kernel was evaluated at this step",
    "kernel_converged": "kernel root finder converged at every evaluated step",
    "kernel_logdet_min": "smallest log|det(I − 𝔄)| on the root-scan grid (≪ 0 without a root: double root)",
    "k_kernel": "rank of a kernel outlier (0: largest)",
    "kernel_top": "λ_max of the stability kernel K̃ = γ0²N JJᵀ/P on the training inputs (twin, Lanczos)",
    "kernel_second": "second eigenvalue of K̃ on the training inputs (twin, Lanczos; tracks the bulk edge)",
    "kernel_top_fresh": "λ_max of the fresh-input kernel X′K̂X′ᵀ/P (twin, Lanczos)",
}
