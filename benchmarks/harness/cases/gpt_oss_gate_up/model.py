"""A dense MXFP4 layer: the shared linear model (benchmarks/harness/models/linear.py)."""

from benchmarks.harness.models.linear import LinearModel as Model

__all__ = ["Model"]
