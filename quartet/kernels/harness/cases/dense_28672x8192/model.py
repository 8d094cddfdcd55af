"""A dense MXFP4 layer: the shared linear model (quartet/kernels/harness/models/linear.py)."""

from quartet.kernels.harness.models.linear import LinearModel as Model

__all__ = ["Model"]
