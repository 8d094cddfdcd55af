"""gpt-oss MoE experts: the shared MoE model (kernels/harness/models/moe.py)."""

from kernels.harness.models.moe import MoEModel as Model

__all__ = ["Model"]
