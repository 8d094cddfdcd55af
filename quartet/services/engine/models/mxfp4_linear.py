"""A linear layer whose weight stays in MXFP4, and the load-time pass that quantizes dense linears to it.

Decode reads every weight once per step, so its speed is bytes read per token:
MXFP4 (4.25 bits a weight) reads 3.8x fewer bytes than bf16. On CUDA the matmul
runs the Triton kernels of ``quartet/kernels/`` (GEMV for a few rows, GEMM for prefill)
on weights re-laid out once for them (``to_kernel_layout``). On the CPU the
kernels' torch reference dequantizes the weight on every call: correct, slow,
and only used when asked for (``ENGINE_WEIGHT_FORMAT=mxfp4`` on a CPU, tests).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import nn

from quartet.kernels import MXFP4Tensor, mxfp4_linear, quantize, to_kernel_layout

log = logging.getLogger(__name__)

#: Smallest dense linear worth quantizing: tiny ones (gpt-oss's 32-expert router) read few bytes,
#: and their exact values decide which experts run.
MIN_QUANTIZED_FEATURES = 64


class MXFP4Linear(nn.Module):
    """``y = x W^T + b`` with ``W`` [out, in] in MXFP4 (blocks of 32 along ``in``); ``b`` dense, x's dtype."""

    def __init__(self, weight: MXFP4Tensor, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        if len(weight.shape) != 2:
            raise ValueError(f"MXFP4Linear needs a 2-D weight [out, in], got {weight.shape}")
        self.out_features, self.in_features = weight.shape
        # Buffers, so the module's memory and device show in state_dict(); the MXFP4Tensor views them.
        self.register_buffer("blocks", weight.blocks, persistent=False)
        self.register_buffer("scales", weight.scales, persistent=False)
        self.layout = weight.layout
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)

    @property
    def weight(self) -> MXFP4Tensor:
        return MXFP4Tensor(self.blocks, self.scales, self.in_features, self.layout)

    @classmethod
    def from_dense(cls, weight: torch.Tensor, bias: torch.Tensor | None = None) -> MXFP4Linear:
        """Quantize a dense ``[out, in]`` weight where it lies (OCP rounding) and lay it out for the kernels."""
        return cls(to_kernel_layout(quantize(weight)), bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return mxfp4_linear(x, self.weight, bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, layout={self.layout}"


def dense_weight(module: nn.Module) -> torch.Tensor | None:
    """The ``[out, in]`` weight of a dense linear (``nn.Linear`` or the engine's own ``Linear``), else None."""
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2 or not weight.is_floating_point():
        return None
    if isinstance(module, nn.Linear):
        return weight
    if hasattr(module, "is_transposed") and hasattr(module, "in_features"):
        return weight.t() if module.is_transposed else weight
    return None


def quantize_linears(model: nn.Module, *, skip: Callable[[str, nn.Module], bool] | None = None) -> list[str]:
    """Replace the model's dense linears by ``MXFP4Linear`` in place; return the names replaced.

    Embeddings are left dense (a lookup reads one row per token). Linears smaller than
    ``MIN_QUANTIZED_FEATURES`` on either side stay dense, as does any ``skip(name, module)`` picks.
    Each weight is quantized on its own device and freed before the next, so peak memory
    grows by one layer's dense copy at most.
    """
    replaced: list[str] = []
    for name, module in list(model.named_modules()):
        weight = dense_weight(module)
        if weight is None or min(weight.shape) < MIN_QUANTIZED_FEATURES:
            continue
        if skip is not None and skip(name, module):
            continue
        bias = getattr(module, "bias", None)
        new = MXFP4Linear.from_dense(weight.detach(), None if bias is None else bias.detach())
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, new)
        replaced.append(name)
    log.info("dense linears quantized to MXFP4", extra={"count": len(replaced)})
    return replaced
