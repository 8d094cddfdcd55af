"""Prefill GEMM: ``x[M, K] @ W^T`` for M up to 8192 (and beyond), bf16 in and out.

Variants:

* ``dot_scaled``: ``tl.dot_scaled`` on each weight tile ("ocp" layout; compiler upcast to bf16 on Hopper).
* ``dequant_dot``: in-register dequantization here (either layout), then ``tl.dot``.
* ``dequant_cublas``: dequantize the whole weight to bf16 once, then torch's bf16 matmul.
  At large M the matmul dwarfs the extra pass over the weight (read 0.53 B, write 2 B a
  weight) and cuBLAS's Hopper kernels beat a Triton tile with a dequant prologue.
"""

from __future__ import annotations

import dataclasses

import torch

from quartet.kernels.mxfp4._env import can_launch, device_sms
from quartet.kernels.mxfp4._launch import MatmulConfig, prefill_config
from quartet.kernels.mxfp4._matmul import check_operands, launch_matmul
from quartet.kernels.mxfp4.dequant import dequantize_triton
from quartet.kernels.mxfp4.format import MXFP4Tensor
from quartet.kernels.mxfp4.reference import mxfp4_linear_torch

__all__ = ["GEMM_VARIANTS", "mxfp4_gemm", "mxfp4_gemm_torch"]

GEMM_VARIANTS = ("dot_scaled", "dequant_dot", "dequant_cublas")


def mxfp4_gemm(
    x: torch.Tensor,
    w: MXFP4Tensor,
    bias: torch.Tensor | None = None,
    *,
    variant: str | None = None,
    config: MatmulConfig | None = None,
) -> torch.Tensor:
    """``x[..., K]`` times MXFP4 ``w[N, K]``: ``[..., N]`` in x's dtype, any number of rows.

    ``variant`` defaults to "dot_scaled" for an "ocp" weight and "dequant_dot" otherwise.
    """
    check_operands(x, w, bias)
    variant = variant or ("dot_scaled" if w.layout == "ocp" else "dequant_dot")
    if variant not in GEMM_VARIANTS:
        raise ValueError(f"variant must be one of {GEMM_VARIANTS}, got {variant!r}")
    if not can_launch(x):
        raise RuntimeError("mxfp4_gemm needs CUDA tensors (or TRITON_INTERPRET=1 on the CPU); use mxfp4_linear")
    x2 = x.reshape(-1, w.k)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    if variant == "dequant_cublas":
        dense = dequantize_triton(w, x2.dtype)
        y = torch.nn.functional.linear(x2, dense, None if bias is None else bias.to(x2.dtype))
    else:
        cfg = config or prefill_config(x2.shape[0], w.n, w.k_padded, device_sms(x), variant)
        y = launch_matmul(x2, w, bias, dataclasses.replace(cfg, mode=variant))
    return y.reshape(*x.shape[:-1], w.n)


def mxfp4_gemm_torch(x: torch.Tensor, w: MXFP4Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """The oracle for ``mxfp4_gemm``: dequantize, fp32 matmul, cast back."""
    return mxfp4_linear_torch(x, w, bias)
