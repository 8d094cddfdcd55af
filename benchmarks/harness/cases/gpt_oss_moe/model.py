"""gpt-oss MoE experts: the shared MoE model (benchmarks/harness/models/moe.py), plus every path of
``mxfp4_moe_triton`` forced at every ``m`` and the floor each is measured against."""

from __future__ import annotations

from benchmarks.harness.case import Forward, Inputs
from benchmarks.harness.ceilings import Ceilings
from benchmarks.harness.models.moe import MoEModel


class Model(MoEModel):
    def variants(self, m: int) -> dict[str, Forward]:
        from quartet.kernels.mxfp4.moe import grouped_tiles, mxfp4_moe_triton

        def forced(path: str, config: object = None) -> Forward:
            def forward(inp: Inputs):
                return mxfp4_moe_triton(inp["x"], inp["ids"], inp["weights"], inp["fma8"], path=path, config=config)
            return forward

        return {
            **super().variants(m),  # moe_fma8, moe_ocp: the dispatcher's choice at this m
            "grouped": forced("grouped"),  # moe_grouped.py's tiles, block from the pair count
            # The earlier in-register tiles (BK 256, masked K), kept to measure against.
            "grouped_v1": forced("grouped", grouped_tiles(m * self.top_k, self.e)),
            "dense": forced("dense"),
            "dense_cublas": forced("dense_cublas"),
        }

    def floor_us(self, m: int, ceilings: Ceilings) -> float:
        """The larger of the experts' MXFP4 bytes over copy bandwidth and the flops over the bf16 matmul peak."""
        work = self.work(m, "mxfp4")
        return max(work.bytes / (ceilings.copy_gbps * 1e3), work.flops / (ceilings.matmul_tflops * 1e6))
