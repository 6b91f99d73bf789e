"""The paper's theory, made numerical: optimal head fits (more to come: constructions, rates)."""

from .fit import FIT_RPES, Fit, fit_heads, head_kernels, target_kernel

__all__ = ["FIT_RPES", "Fit", "fit_heads", "head_kernels", "target_kernel"]
