"""Quartet's MXFP4 kernels. The public API (documented in quartet/kernels/README.md):

* the format: ``MXFP4Tensor``, ``quantize`` (OCP MX rule), ``dequantize``, and
  ``to_kernel_layout`` (the CUDA kernels' code layout, applied once at load);
* checkpoints: ``load_mxfp4``, ``load_gpt_oss_experts``, ``MoEWeights``;
* ops that run Triton on CUDA and the torch reference elsewhere: ``mxfp4_linear``,
  ``mxfp4_moe``; routing helper ``route_topk``.

Importing this package does not import Triton; the kernels load on first CUDA use.
"""

from quartet.kernels.mxfp4.checkpoint import from_blocks, load_gpt_oss_experts, load_mxfp4
from quartet.kernels.mxfp4.format import MXFP4Tensor
from quartet.kernels.mxfp4.reference import dequantize_torch
from quartet.kernels.mxfp4.format import quantize_torch as quantize
from quartet.kernels.mxfp4.moe_layout import MoEWeights
from quartet.kernels.mxfp4.ops import dequantize, mxfp4_linear, mxfp4_moe, to_kernel_layout
from quartet.kernels.mxfp4.reference import mxfp4_linear_torch, mxfp4_moe_torch
from quartet.kernels.mxfp4.reference import route_torch as route_topk

__all__ = [
    "MXFP4Tensor",
    "MoEWeights",
    "dequantize",
    "dequantize_torch",
    "from_blocks",
    "load_gpt_oss_experts",
    "load_mxfp4",
    "mxfp4_linear",
    "mxfp4_linear_torch",
    "mxfp4_moe",
    "mxfp4_moe_torch",
    "quantize",
    "route_topk",
    "to_kernel_layout",
]
