"""A dense MXFP4 layer: the shared linear model (kernels/harness/models/linear.py)."""

from kernels.harness.models.linear import LinearModel as Model

__all__ = ["Model"]
