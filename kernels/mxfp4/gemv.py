"""Decode GEMV / skinny GEMM: ``x[M, K] @ W^T`` for M = 1..16, bf16 in and out.

Variants (all fp32 accumulation, split-K in one launch where the grid is too small):

* ``dot_scaled`` / ``dequant_dot``: the shared matmul kernel (``_matmul.py``) with a
  16-row activation tile; the tensor cores' unused rows cost nothing in a memory-bound loop.
* ``fma``: M = 1 only, CUDA cores: each 32-block's 16 code pairs are multiplied with the
  even/odd activations, summed, and scaled once per block (one multiply per 32 weights).
"""

from __future__ import annotations

import dataclasses

import torch
import triton
import triton.language as tl

from kernels.mxfp4._env import can_launch, device_sms, is_interpreter
from kernels.mxfp4._epilogue import store_or_reduce
from kernels.mxfp4._launch import DECODE_MAX_M, MatmulConfig, decode_config, splitk_counters
from kernels.mxfp4._matmul import check_operands, launch_matmul
from kernels.mxfp4._tile import e2m1_to_f32, e8m0_to_f32
from kernels.mxfp4.format import MXFP4Tensor
from kernels.mxfp4.reference import mxfp4_linear_torch

__all__ = ["GEMV_VARIANTS", "mxfp4_gemv", "mxfp4_gemv_torch"]

GEMV_VARIANTS = ("dot_scaled", "dequant_dot", "fma")


@triton.jit
def _gemv_fma_kernel(
    x_ptr, wq_ptr, ws_ptr, b_ptr, y_ptr, part_ptr, cnt_ptr,
    N, K, KP_HALF, KP_BLOCKS, TILES_PER_SPLIT,
    BN: tl.constexpr, BK: tl.constexpr, SPLIT_K: tl.constexpr, HAS_BIAS: tl.constexpr, EVEN_K: tl.constexpr,
    INTERPRET: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_s = tl.program_id(1)
    offs_n = pid_n * BN + tl.arange(0, BN)
    n_ok = offs_n < N
    wq_rows = wq_ptr + offs_n[:, None].to(tl.int64) * KP_HALF
    ws_rows = ws_ptr + offs_n[:, None].to(tl.int64) * KP_BLOCKS
    t0 = pid_s * TILES_PER_SPLIT
    t1 = tl.minimum(t0 + TILES_PER_SPLIT, tl.cdiv(KP_HALF * 2, BK))
    acc = tl.zeros((BN,), dtype=tl.float32)
    for t in range(t0, t1):
        kb = t * (BK // 2) + tl.arange(0, BK // 2)
        ks = t * (BK // 32) + tl.arange(0, BK // 32)
        kx = t * BK + tl.arange(0, BK)
        if EVEN_K:
            wq = tl.load(wq_rows + kb[None, :], mask=n_ok[:, None], other=0)
            ws = tl.load(ws_rows + ks[None, :], mask=n_ok[:, None], other=0)
            x = tl.load(x_ptr + kx).to(tl.float32)
        else:
            wq = tl.load(wq_rows + kb[None, :], mask=n_ok[:, None] & (kb < KP_HALF)[None, :], other=0)
            ws = tl.load(ws_rows + ks[None, :], mask=n_ok[:, None] & (ks < KP_BLOCKS)[None, :], other=0)
            x = tl.load(x_ptr + kx, mask=kx < K, other=0.0).to(tl.float32)
        x_even, x_odd = tl.split(x.reshape(BK // 2, 2))
        prod = e2m1_to_f32(wq & 0xF) * x_even[None, :] + e2m1_to_f32(wq >> 4) * x_odd[None, :]
        per_block = tl.sum(prod.reshape(BN, BK // 32, 16), axis=2)
        acc += tl.sum(per_block * e8m0_to_f32(ws), axis=1)
    offs_m = tl.arange(0, 1)
    store_or_reduce(acc[:, None], y_ptr, b_ptr, part_ptr, cnt_ptr, offs_n, n_ok, offs_m, offs_m < 1, 1, N, N,
                    pid_n, pid_s, SPLIT_K, HAS_BIAS, INTERPRET)


def _launch_fma(x2: torch.Tensor, w: MXFP4Tensor, bias: torch.Tensor | None, cfg: MatmulConfig) -> torch.Tensor:
    n = w.n
    y = torch.empty((1, n), dtype=x2.dtype, device=x2.device)
    k_tiles = triton.cdiv(w.k_padded, cfg.bk)
    per_split = triton.cdiv(k_tiles, max(1, min(cfg.split_k, k_tiles)))
    split = triton.cdiv(k_tiles, per_split)
    num_tiles = triton.cdiv(n, cfg.bn)
    part = torch.empty((split, 1, n), dtype=torch.float32, device=x2.device) if split > 1 else y
    cnt = splitk_counters(x2.device, num_tiles) if split > 1 else y
    _gemv_fma_kernel[(num_tiles, split)](
        x2, w.blocks, w.scales, bias if bias is not None else y, y, part, cnt,
        n, w.k, w.k_padded // 2, w.k_padded // 32, per_split,
        BN=cfg.bn, BK=cfg.bk, SPLIT_K=split, HAS_BIAS=bias is not None,
        EVEN_K=w.k == w.k_padded and w.k_padded % cfg.bk == 0, INTERPRET=is_interpreter(),
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )
    return y


def mxfp4_gemv(
    x: torch.Tensor,
    w: MXFP4Tensor,
    bias: torch.Tensor | None = None,
    *,
    variant: str = "dot_scaled",
    config: MatmulConfig | None = None,
) -> torch.Tensor:
    """``x[..., K]`` (at most 16 rows in all) times MXFP4 ``w[N, K]``: ``[..., N]`` in x's dtype."""
    check_operands(x, w, bias)
    if variant not in GEMV_VARIANTS:
        raise ValueError(f"variant must be one of {GEMV_VARIANTS}, got {variant!r}")
    if not can_launch(x):
        raise RuntimeError("mxfp4_gemv needs CUDA tensors (or TRITON_INTERPRET=1 on the CPU); use mxfp4_linear")
    x2 = x.reshape(-1, w.k)
    m = x2.shape[0]
    if m > DECODE_MAX_M:
        raise ValueError(f"mxfp4_gemv takes at most {DECODE_MAX_M} rows, got {m}; use mxfp4_gemm")
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    if variant == "fma":
        if m != 1:
            raise ValueError("the fma variant takes exactly one row")
        cfg = config or decode_config(m, w.n, w.k_padded, device_sms(x), "dot_scaled")
        y = _launch_fma(x2, w, bias, cfg)
    else:
        cfg = config or decode_config(m, w.n, w.k_padded, device_sms(x), variant)
        if cfg.mode != variant:
            cfg = dataclasses.replace(cfg, mode=variant)
        y = launch_matmul(x2, w, bias, cfg)
    return y.reshape(*x.shape[:-1], w.n)


def mxfp4_gemv_torch(x: torch.Tensor, w: MXFP4Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """The oracle for ``mxfp4_gemv``: dequantize, fp32 matmul, cast back."""
    return mxfp4_linear_torch(x, w, bias)

