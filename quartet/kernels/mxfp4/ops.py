"""The public MXFP4 ops: Triton on CUDA, the torch reference everywhere else.

Triton is imported only when a CUDA tensor arrives, so CPU-only installs need no Triton.
"""

from __future__ import annotations

import torch

from quartet.kernels.mxfp4._launch import DECODE_MAX_M, PREFILL_CUBLAS_MIN_M, SKINNY_WIDE_MAX_M, SKINNY_WIDE_MIN_N
from quartet.kernels.mxfp4.format import MXFP4Tensor
from quartet.kernels.mxfp4.moe_layout import MoEWeights
from quartet.kernels.mxfp4.reference import mxfp4_linear_torch, mxfp4_moe_torch


#: The code layout ``to_kernel_layout`` gives MoE experts (a module setting: ``engine_gpu
#: --expert-layout`` swaps it to compare). "fma8t" (tiled, ``layout.py``): on the H100 the MoE
#: decode at 1-256 tokens ran 0-10 % faster than on "fma8", prefill steps of 2048-8192 tokens
#: 2-4 % slower (docs/perf-log/kernels-mxfp4.md, run H).
EXPERT_LAYOUT = "fma8t"


def to_kernel_layout(w: MXFP4Tensor | MoEWeights, layout: str | None = None) -> MXFP4Tensor | MoEWeights:
    """The code layout the CUDA kernels run fastest on; call once at load time.

    A matrix gets "fma8" unless ``layout`` names another: "fma8t" (tiled) makes the one-row GEMV
    at K > 4096 about 20 % faster but the 2-255-row kernels slower (docs/perf-log/kernels-mxfp4.md, run H),
    so it suits weights served one token at a time. ``MoEWeights`` get ``EXPERT_LAYOUT`` (or
    ``layout``), "fma8" when a dimension is not a multiple of 8. CPU tensors stay as they are
    (the torch reference reads any layout).
    """
    from quartet.kernels.mxfp4.layout import to_layout

    if isinstance(w, MoEWeights):
        return w.to_layout(kernel_layout(w, layout)) if w.glu.blocks.is_cuda else w
    return to_layout(w, kernel_layout(w, layout)) if w.blocks.is_cuda else w


def kernel_layout(w: MXFP4Tensor | MoEWeights, layout: str | None = None) -> str:
    """The layout ``to_kernel_layout`` gives ``w`` on CUDA: ``layout``, or the default ("fma8" for a
    matrix, ``EXPERT_LAYOUT`` for experts) with "fma8" where "fma8t" cannot hold it (a dimension
    not a multiple of 8; asked for by name, "fma8t" then fails in ``to_layout`` instead)."""
    from quartet.kernels.mxfp4.layout import LAYOUTS, tileable

    want = layout or (EXPERT_LAYOUT if isinstance(w, MoEWeights) else "fma8")
    if want not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {want!r}")
    mats = (w.glu, w.linear, w.down) if isinstance(w, MoEWeights) else (w,)
    return "fma8" if layout is None and want == "fma8t" and not all(map(tileable, mats)) else want


def mxfp4_linear(x: torch.Tensor, w: MXFP4Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x[..., K] @ W[N, K]^T (+ bias)`` -> ``[..., N]`` in x's dtype (bf16 in, bf16 out on CUDA).

    CUDA: up to 16 rows take the decode GEMV (CUDA cores on "fma8" weights for the first
    rows, tensor cores after); decode batches on "fma8" weights the skinny GEMM (in-register
    decode, the weight read once at 4.25 bits) below ``PREFILL_CUBLAS_MIN_M`` rows, and below
    ``SKINNY_WIDE_MAX_M`` for weights of ``SKINNY_WIDE_MIN_N`` rows and more (the
    unembedding); everything else the prefill GEMM (bf16 dequantize + cuBLAS from
    ``PREFILL_CUBLAS_MIN_M`` rows, where that measured faster). Weights in either layout
    work; ``to_kernel_layout`` gives the fast one.
    Elsewhere: ``mxfp4_linear_torch``.
    """
    if not x.is_cuda:
        return mxfp4_linear_torch(x, w, bias)
    rows = x.numel() // max(1, x.shape[-1])
    if rows <= DECODE_MAX_M:
        from quartet.kernels.mxfp4.gemv import mxfp4_gemv

        return mxfp4_gemv(x, w, bias)
    wide = w.n >= SKINNY_WIDE_MIN_N and rows < SKINNY_WIDE_MAX_M
    if w.layout == "fma8" and (rows < PREFILL_CUBLAS_MIN_M or wide):
        from quartet.kernels.mxfp4.gemm_skinny import mxfp4_gemm_skinny

        return mxfp4_gemm_skinny(x, w, bias)
    from quartet.kernels.mxfp4.gemm import mxfp4_gemm

    return mxfp4_gemm(x, w, bias, variant="dequant_cublas" if rows >= PREFILL_CUBLAS_MIN_M else None)


def mxfp4_moe(
    x: torch.Tensor,
    ids: torch.Tensor,
    weights: torch.Tensor,
    w: MoEWeights,
    *,
    alpha: float = 1.702,
    limit: float = 7.0,
) -> torch.Tensor:
    """gpt-oss experts for ``x[T, H]`` routed to ``ids[T, k]`` with ``weights[T, k]`` -> ``[T, H]``.

    CUDA: the fused Triton kernels (decode path for few tokens, grouped by expert otherwise).
    Elsewhere: ``mxfp4_moe_torch``.
    """
    if not x.is_cuda:
        return mxfp4_moe_torch(x, ids, weights, w, alpha=alpha, limit=limit)
    from quartet.kernels.mxfp4.moe import mxfp4_moe_triton

    return mxfp4_moe_triton(x, ids, weights, w, alpha=alpha, limit=limit)


def dequantize(w: MXFP4Tensor, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """Dense ``[..., N, k]`` copy of ``w`` in ``dtype``: the Triton kernel on CUDA, ``dequantize_torch`` elsewhere."""
    if not w.blocks.is_cuda:
        from quartet.kernels.mxfp4.reference import dequantize_torch

        return dequantize_torch(w, dtype)
    from quartet.kernels.mxfp4.dequant import dequantize_triton

    return dequantize_triton(w, dtype)
