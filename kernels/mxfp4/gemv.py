"""Decode GEMV / skinny GEMM: ``x[M, K] @ W^T`` for M = 1..16, bf16 in and out.

Variants (all fp32 accumulation, split-K in one launch where the grid is too small):

* ``fma``: CUDA cores over the "fma8" layout (``layout.py``): per weight a shift, a
  mask and one FMA, the block scale once per 32 weights. Made for M = 1 (one FMA per
  weight and row, so its cost grows with M).
* ``dot_scaled`` ("ocp" layout) / ``dequant_dot`` (either layout): the tensor-core
  kernel in ``_matmul.py`` with a 16-row activation tile; the unused rows cost nothing.
"""

from __future__ import annotations

import dataclasses

import torch
import triton
import triton.language as tl

from kernels.mxfp4._env import can_launch, device_sms, is_interpreter
from kernels.mxfp4._epilogue import store_or_reduce
from kernels.mxfp4._launch import DECODE_MAX_M, FMA_MAX_M, MatmulConfig, decode_config, fma_config, splitk_counters
from kernels.mxfp4._matmul import check_operands, code_pointer, launch_matmul, split_plan
from kernels.mxfp4._tile import fma_k_loop
from kernels.mxfp4.format import MXFP4Tensor
from kernels.mxfp4.reference import mxfp4_linear_torch

__all__ = ["GEMV_VARIANTS", "mxfp4_gemv", "mxfp4_gemv_torch"]

GEMV_VARIANTS = ("fma", "dot_scaled", "dequant_dot")


@triton.jit
def _gemv_fma_kernel(
    x_ptr, w_ptr, ws_ptr, b_ptr, y_ptr, part_ptr, cnt_ptr,
    M, N, K, stride_xm, stride_ym, KP_BLOCKS, TILES_PER_SPLIT,
    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, SPLIT_K: tl.constexpr, HAS_BIAS: tl.constexpr,
    EVEN_K: tl.constexpr, INTERPRET: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_s = tl.program_id(1)
    offs_n = pid_n * BN + tl.arange(0, BN)
    n_ok = offs_n < N
    offs_m = tl.arange(0, BM)
    m_ok = offs_m < M
    w_rows = w_ptr + offs_n[:, None].to(tl.int64) * (KP_BLOCKS * 4)
    ws_rows = ws_ptr + offs_n[:, None].to(tl.int64) * KP_BLOCKS
    t0 = pid_s * TILES_PER_SPLIT
    t1 = tl.minimum(t0 + TILES_PER_SPLIT, tl.cdiv(KP_BLOCKS * 32, BK))
    acc = tl.zeros((BN, BM), dtype=tl.float32)
    acc = fma_k_loop(acc, x_ptr + offs_m.to(tl.int64) * stride_xm, m_ok, w_rows, ws_rows, n_ok, t0, t1, K,
                     KP_BLOCKS, BN, BK, BM, EVEN_K)
    store_or_reduce(acc, y_ptr, b_ptr, part_ptr, cnt_ptr, offs_n, n_ok, offs_m, m_ok, M, N, stride_ym,
                    pid_n, pid_s, SPLIT_K, HAS_BIAS, INTERPRET)


def _launch_fma(x2: torch.Tensor, w: MXFP4Tensor, bias: torch.Tensor | None, cfg: MatmulConfig) -> torch.Tensor:
    m, n = x2.shape[0], w.n
    y = torch.empty((m, n), dtype=x2.dtype, device=x2.device)
    split, per_split = split_plan(w.k_padded, cfg.bk, cfg.split_k)
    num_tiles = triton.cdiv(n, cfg.bn)
    part = torch.empty((split, m, n), dtype=torch.float32, device=x2.device) if split > 1 else y
    cnt = splitk_counters(x2.device, num_tiles) if split > 1 else y
    _gemv_fma_kernel[(num_tiles, split)](
        x2, code_pointer(w), w.scales, bias if bias is not None else y, y, part, cnt,
        m, n, w.k, x2.stride(0), y.stride(0), w.k_padded // 32, per_split,
        BM=triton.next_power_of_2(m), BN=cfg.bn, BK=cfg.bk, SPLIT_K=split, HAS_BIAS=bias is not None,
        EVEN_K=w.k == w.k_padded and w.k_padded % cfg.bk == 0, INTERPRET=is_interpreter(),
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )
    return y


def mxfp4_gemv(
    x: torch.Tensor,
    w: MXFP4Tensor,
    bias: torch.Tensor | None = None,
    *,
    variant: str | None = None,
    config: MatmulConfig | None = None,
) -> torch.Tensor:
    """``x[..., K]`` (at most 16 rows in all) times MXFP4 ``w[N, K]``: ``[..., N]`` in x's dtype.

    ``variant`` defaults to "fma" for an "fma8" weight (up to ``FMA_MAX_M`` rows, then
    "dequant_dot") and "dot_scaled" for an "ocp" one.
    """
    check_operands(x, w, bias)
    rows = x.numel() // max(1, w.k)
    if variant is None:
        variant = ("fma" if rows <= FMA_MAX_M else "dequant_dot") if w.layout == "fma8" else "dot_scaled"
    if variant not in GEMV_VARIANTS:
        raise ValueError(f"variant must be one of {GEMV_VARIANTS}, got {variant!r}")
    if variant == "fma" and w.layout != "fma8":
        raise ValueError("the fma variant reads the fma8 layout: convert once with kernels.mxfp4.layout.to_layout")
    if not can_launch(x):
        raise RuntimeError("mxfp4_gemv needs CUDA tensors (or TRITON_INTERPRET=1 on the CPU); use mxfp4_linear")
    x2 = x.reshape(-1, w.k)
    m = x2.shape[0]
    if m > DECODE_MAX_M:
        raise ValueError(f"mxfp4_gemv takes at most {DECODE_MAX_M} rows, got {m}; use mxfp4_gemm")
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    if variant == "fma":
        y = _launch_fma(x2, w, bias, config or fma_config(m, w.n, w.k_padded, device_sms(x)))
    else:
        cfg = config or decode_config(m, w.n, w.k_padded, device_sms(x), variant)
        y = launch_matmul(x2, w, bias, dataclasses.replace(cfg, mode=variant))
    return y.reshape(*x.shape[:-1], w.n)


def mxfp4_gemv_torch(x: torch.Tensor, w: MXFP4Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """The oracle for ``mxfp4_gemv``: dequantize, fp32 matmul, cast back."""
    return mxfp4_linear_torch(x, w, bias)
