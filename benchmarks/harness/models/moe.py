"""One gpt-oss MoE layer's experts: top-k routed tokens, gate_up + clamped SwiGLU + down.

``m`` is the number of tokens. The baseline is torch bf16 on the dequantized expert
weights with the routing known on the host (per expert: gather rows, two ``F.linear``,
SwiGLU, weighted ``index_add``), the best a plain torch MoE can do. The floor counts the
weights of the experts a call touches (exactly k at one token; E(1 - (1 - k/E)^T) on
average otherwise) plus activations in and out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.harness.case import Forward, Inputs, Manifest, Work
from benchmarks.harness.models.linear import quantize_random
from quartet.kernels.mxfp4.format import MXFP4Tensor
from quartet.kernels.mxfp4.moe_layout import MoEWeights
from quartet.kernels.mxfp4.ops import dequantize
from quartet.kernels.mxfp4.reference import route_torch, swiglu_torch

BIAS_STD = 0.02


class MoEModel:
    def __init__(self, manifest: Manifest) -> None:
        s = manifest.shape
        self.e, self.h, self.i, self.top_k = int(s["experts"]), int(s["hidden"]), int(s["intermediate"]), int(s["top_k"])

    def make_weights(self, gen: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
        gu = quantize_random((self.e, 2 * self.i, self.h), gen, device)
        dn = quantize_random((self.e, self.h, self.i), gen, device)
        return {
            "gate_up_blocks": gu["blocks"], "gate_up_scales": gu["scales"],
            "down_blocks": dn["blocks"], "down_scales": dn["scales"],
            "gate_up_bias": (torch.randn((self.e, 2 * self.i), generator=gen, device=device) * BIAS_STD).bfloat16(),
            "down_bias": (torch.randn((self.e, self.h), generator=gen, device=device) * BIAS_STD).bfloat16(),
        }

    def make_activations(self, m: int, gen: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
        return {"x": torch.randn((m, self.h), generator=gen, device=device).bfloat16(),
                "logits": torch.randn((m, self.e), generator=gen, device=device)}

    def _route(self, inputs: Inputs, logits: torch.Tensor) -> Inputs:
        ids, weights = route_torch(logits, self.top_k)
        flat = ids.reshape(-1).long().cpu()
        groups = []  # host-known routing for the bf16 baseline: (expert, token rows, weights)
        for e in torch.unique(flat).tolist():
            pairs = (flat == e).nonzero().squeeze(1).to(ids.device)
            groups.append((e, pairs // self.top_k, weights.reshape(-1)[pairs]))
        return {**inputs, "ids": ids, "weights": weights, "groups": groups, "logits": logits}

    def prepare(self, t: dict[str, torch.Tensor]) -> Inputs:
        gate_up = MXFP4Tensor(t["gate_up_blocks"], t["gate_up_scales"], self.h)
        down = MXFP4Tensor(t["down_blocks"], t["down_scales"], self.i)
        experts = MoEWeights.from_gate_up(gate_up, down, t["gate_up_bias"], t["down_bias"])
        inputs = {
            "ocp": experts, "fma8": experts.to_layout("fma8"), "fma8t": experts.to_layout("fma8t"),
            "gate_up_bf16": dequantize(gate_up, torch.bfloat16), "down_bf16": dequantize(down, torch.bfloat16),
            "gate_up_bias": t["gate_up_bias"], "down_bias": t["down_bias"], "x": t["x"],
        }
        return self._route(inputs, t["logits"])

    def rotate(self, inputs: Inputs, index: int) -> Inputs:
        # Same weights (the layer is far larger than L2); new tokens and new routing per set.
        gen = torch.Generator(device=inputs["x"].device)
        gen.manual_seed(10_000 + index)
        x = torch.randn(inputs["x"].shape, generator=gen, device=inputs["x"].device).bfloat16()
        logits = torch.randn(inputs["logits"].shape, generator=gen, device=x.device)
        return self._route({**inputs, "x": x}, logits)

    def baseline(self, m: int) -> tuple[str, Forward]:
        def forward(inp: Inputs) -> torch.Tensor:
            x = inp["x"]
            out = torch.zeros((x.shape[0], self.h), dtype=torch.float32, device=x.device)
            for e, rows, wts in inp["groups"]:
                h = F.linear(x[rows], inp["gate_up_bf16"][e], inp["gate_up_bias"][e])
                act = swiglu_torch(h[:, 0::2].float(), h[:, 1::2].float(), 1.702, 7.0).bfloat16()
                y = F.linear(act, inp["down_bf16"][e], inp["down_bias"][e])
                out.index_add_(0, rows, y.float() * wts[:, None])
            return out.bfloat16()

        return "torch_bf16", forward

    def variants(self, m: int) -> dict[str, Forward]:
        from quartet.kernels.mxfp4.moe import mxfp4_moe_triton

        # fma8 / fma8t (tiled, the engine's) weights: the decode kernels, then the grouped and dense paths;
        # ocp weights: dot_scaled throughout.
        return {f"moe_{layout}": (lambda inp, layout=layout: mxfp4_moe_triton(inp["x"], inp["ids"], inp["weights"],
                                                                             inp[layout]))
                for layout in ("fma8t", "fma8", "ocp")}

    def active_experts(self, m: int) -> float:
        return self.top_k if m == 1 else self.e * (1 - (1 - self.top_k / self.e) ** m)

    def work(self, m: int, label: str) -> Work:
        h, i = self.h, self.i
        if label == "torch_bf16":
            per_expert = 3 * h * i * 2 + (2 * i + h) * 2
        else:
            per_expert = 3 * h * i // 2 + 3 * h * i // 32 + (2 * i + h) * 4
        read = int(self.active_experts(m) * per_expert) + m * h * 2 + m * self.top_k * 8
        return Work(bytes_read=read, bytes_written=m * h * 2, flops=6 * m * self.top_k * h * i)


Model = MoEModel
