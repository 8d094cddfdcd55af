"""gpt-oss MoE experts: the shared MoE model (benchmarks/harness/models/moe.py)."""

from benchmarks.harness.models.moe import MoEModel as Model

__all__ = ["Model"]
