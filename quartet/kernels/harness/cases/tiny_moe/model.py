"""gpt-oss MoE experts: the shared MoE model (quartet/kernels/harness/models/moe.py)."""

from quartet.kernels.harness.models.moe import MoEModel as Model

__all__ = ["Model"]
