"""Weight-only int8 linear layers for CPU decode, and the load-time pass that converts dense linears.

CPU decode is bound by streaming every weight once per step: 540 MB per
token for SmolLM2-135M in fp32, a quarter of that in int8. Weights are
quantized symmetrically per output channel (``w ~= q * scale``, ``q`` in
[-127, 127]); activations are not quantized, so every row's result depends on
that row alone (a batch-mate cannot change it, unlike dynamic per-tensor
activation quantization). The product runs through ATen's
``_weight_int8pack_mm`` (AVX-512 on x86), which takes bf16 activations: x is
rounded to bf16 for the matmul only, the rest of the model (norms, residual
stream, attention, KV cache) stays in fp32.

On this 2-core AMD EPYC machine a 576x3072 weight streams in ~120 us as int8
against ~280 us as transposed fp32 and ~240 us as bf16 (oneDNN), and at 8
rows int8 keeps that while fp32 SGEMM slows to ~1 ms (see docs/perf-log/cpu-engine.md).
The error against fp32 is stated there and tested (tests/engine/test_engine_core_int8.py).
"""

from __future__ import annotations

import torch
from torch import nn

from quartet.services.engine.models.linear import Linear


class Int8Linear(nn.Module):
    """``y = x W^T + b`` with ``W`` [out, in] held as int8 codes and one bf16 scale per output channel."""

    def __init__(self, codes: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.out_features, self.in_features = codes.shape
        self.register_buffer("codes", codes, persistent=False)
        self.register_buffer("scales", scales, persistent=False)
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)

    @classmethod
    def from_dense(cls, weight: torch.Tensor, bias: torch.Tensor | None = None) -> Int8Linear:
        """Quantize a dense ``[out, in]`` weight per output channel (round to nearest)."""
        weight = weight.float()
        scales = (weight.abs().amax(dim=1) / 127.0).clamp(min=1e-12)
        codes = torch.round(weight / scales[:, None]).clamp(-127, 127).to(torch.int8)
        return cls(codes.contiguous(), scales.to(torch.bfloat16), None if bias is None else bias.float())

    def dequantized(self) -> torch.Tensor:
        """The fp32 weight these codes stand for (tests and error reports)."""
        return self.codes.float() * self.scales.float()[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        rows = x.reshape(-1, self.in_features).to(torch.bfloat16)
        out = torch.ops.aten._weight_int8pack_mm(rows, self.codes, self.scales).to(x.dtype)
        if self.bias is not None:
            out = out + self.bias
        return out.view(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per-channel"


#: Model types whose CPU default (ENGINE_WEIGHT_FORMAT=auto) is int8: the dense family, where its error is
#: measured and stated. gpt-oss keeps dense weights on the CPU, where it serves as the oracle for the GPU path.
INT8_BY_DEFAULT = frozenset({"llama", "mistral", "qwen2", "qwen3"})


def int8_supported(device: torch.device | str) -> bool:
    return torch.device(device).type == "cpu"


def quantize_linears_int8(model: nn.Module) -> list[str]:
    """Replace every ``Linear`` of ``model`` by an ``Int8Linear`` in place; returns the replaced names."""
    replaced = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if not isinstance(child, Linear):
                continue
            weight = child.weight.t() if child.is_transposed else child.weight
            setattr(module, child_name, Int8Linear.from_dense(weight.detach(), child.bias))
            replaced.append(f"{name}.{child_name}" if name else child_name)
    return replaced
