"""Decode GEMV / skinny GEMM: ``x[M, K] @ W^T`` for M = 1..16, bf16 in and out.

Variants (all fp32 accumulation, split-K fixed up in the same launch):

* ``fma``: CUDA cores over the "fma8" layout (``layout.py``): per weight a shift, a
  mask and one FMA per row, the block scale once per 32 weights. A program holds one K
  slice of the activations in registers and streams row chunks through it, one 16-byte
  MX block per thread and load (``_fma.py``, ``_decode.py``). Up to ``FMA_ROWS`` (4)
  rows: the weights are decoded once and multiplied into each row.
* ``mma`` (one row, "fma8"): two weights decoded an instruction and ``mma.sync`` as the
  multiply-add (``_dec2_mma.py``, ``_dec2_gemv.py``); about half the instructions of ``fma``.
  Exact E2M1 weights in the tensor cores, each block's sum scaled in fp32: every scale byte.
* ``dot_scaled`` ("ocp" layout) / ``dequant_dot`` (either layout): the tensor-core
  kernel in ``_matmul.py`` with a 16-row activation tile; the unused rows cost nothing.
"""

from __future__ import annotations

import dataclasses

import torch
import triton
import triton.language as tl

from quartet.kernels.mxfp4._dec2_gemv import gemv_mma, gemv_mma_default
from quartet.kernels.mxfp4._decode import block_dot, load_word_tile, load_x_blocks
from quartet.kernels.mxfp4._env import can_launch, device_sms, is_interpreter
from quartet.kernels.mxfp4._epilogue import store_or_reduce
from quartet.kernels.mxfp4._fma import (FMA_CONFIGS, FmaConfig, MmaConfig, fma_default, fma_grid, max_chunks, max_slices,
                                use_autotune)
from quartet.kernels.mxfp4._launch import DECODE_MAX_M, FMA_MAX_M, FMA_ROWS, MatmulConfig, decode_config, splitk_counters
from quartet.kernels.mxfp4._matmul import check_operands, code_pointer, launch_matmul
from quartet.kernels.mxfp4.format import MXFP4Tensor
from quartet.kernels.mxfp4.layout import FMA8_LAYOUTS, layout_code
from quartet.kernels.mxfp4.reference import mxfp4_linear_torch

__all__ = ["GEMV_VARIANTS", "ONE_ROW_VARIANTS", "mxfp4_gemv", "mxfp4_gemv_torch"]

GEMV_VARIANTS = ("fma", "dot_scaled", "dequant_dot")
# Variants that take one activation row only (the harness's M sweep skips them by this name).
ONE_ROW_VARIANTS = ("mma",)
# At one row "mma" replaces "fma" from this many MX blocks a row (K > 4096). H100 runs F2/F3
# (docs/perf-log/kernels-mxfp4.md), fixed launch configs: 28672x8192 68.4 us against fma's 102.3; on
# 2880-wide layers fma stayed ahead (2880x2880 5.9 against 8.0 us, 5760x2880 7.7 against 9.9).
MMA_MIN_K_BLOCKS = 129


@triton.jit
def _gemv_fma_kernel(
    x_ptr, w_ptr, ws_ptr, b_ptr, y_ptr, part_ptr, cnt_ptr,
    M, N, K, stride_xm, stride_ym, KP_BLOCKS,
    BM: tl.constexpr, HAS_BIAS: tl.constexpr, EVEN_K: tl.constexpr, INTERPRET: tl.constexpr, SWIZZLED: tl.constexpr,
    BN: tl.constexpr, KW: tl.constexpr, CHUNKS: tl.constexpr,
):
    tl.static_assert(BM == 1 or BM == 2 or BM == 4, "the CUDA-core GEMV takes 1, 2 or 4 activation rows")
    KB: tl.constexpr = KW // 4
    pid_r = tl.program_id(0)
    pid_s = tl.program_id(1)
    n_split = tl.num_programs(1)
    offs_m = tl.arange(0, BM)
    m_ok = offs_m < M
    b = pid_s * KB + tl.arange(0, KB)
    # Each row's K slice stays in registers for all of this program's row chunks.
    x_a = load_x_blocks(x_ptr, b, K, KB, EVEN_K)
    if BM > 1:
        x_b = load_x_blocks(x_ptr + stride_xm, b, tl.where(M > 1, K, 0), KB, EVEN_K)
    if BM > 2:
        x_c = load_x_blocks(x_ptr + 2 * stride_xm, b, tl.where(M > 2, K, 0), KB, EVEN_K)
        x_d = load_x_blocks(x_ptr + 3 * stride_xm, b, tl.where(M > 3, K, 0), KB, EVEN_K)
    n_chunks = tl.cdiv(N, BN)
    for i in range(CHUNKS):
        # No branch around the loads and products: past the last chunk every row is masked
        # (no memory traffic), and a straight loop body lets the compiler hoist the
        # activations' layout conversion out of the loop.
        chunk = pid_r * CHUNKS + i
        offs_n = chunk * BN + tl.arange(0, BN)
        n_ok = offs_n < N
        w, s = load_word_tile(w_ptr, ws_ptr, offs_n, n_ok, pid_s * KB, KP_BLOCKS, KB, SWIZZLED)
        acc_a = tl.sum(block_dot(w, s, x_a), axis=1)
        if BM == 1:
            acc = acc_a[:, None]
        elif BM == 2:
            acc = tl.join(acc_a, tl.sum(block_dot(w, s, x_b), axis=1))
        else:
            acc_b = tl.sum(block_dot(w, s, x_b), axis=1)
            acc_c = tl.sum(block_dot(w, s, x_c), axis=1)
            acc_d = tl.sum(block_dot(w, s, x_d), axis=1)
            # join stacks on a new last axis: (a, c) and (b, d) pairs flatten to a, b, c, d.
            acc = tl.join(tl.join(acc_a, acc_c), tl.join(acc_b, acc_d)).reshape(BN, 4)
        if chunk < n_chunks:
            if n_split == 1:  # one K slice: no partials, no counter round trip
                store_or_reduce(acc, y_ptr, b_ptr, part_ptr, cnt_ptr, offs_n, n_ok, offs_m, m_ok, M, N, stride_ym,
                                chunk, pid_s, n_split, False, HAS_BIAS, INTERPRET)
            else:
                store_or_reduce(acc, y_ptr, b_ptr, part_ptr, cnt_ptr, offs_n, n_ok, offs_m, m_ok, M, N, stride_ym,
                                chunk, pid_s, n_split, True, HAS_BIAS, INTERPRET)


_gemv_fma_tuned = triton.autotune(configs=FMA_CONFIGS, key=["M", "N", "K"])(_gemv_fma_kernel)


def _launch_fma(x2: torch.Tensor, w: MXFP4Tensor, bias: torch.Tensor | None, cfg: FmaConfig | None) -> torch.Tensor:
    m, n = x2.shape[0], w.n
    k_words = w.k_padded // 8
    if cfg is None and not use_autotune():
        cfg = fma_default(n, k_words, device_sms(x2), m)
    y = torch.empty((m, n), dtype=x2.dtype, device=x2.device)
    part = torch.empty((max_slices(k_words, cfg), m, n), dtype=torch.float32, device=x2.device)
    cnt = splitk_counters(x2.device, max_chunks(n, cfg))
    args = (x2, code_pointer(w), w.scales, bias if bias is not None else y, y, part, cnt,
            m, n, w.k, x2.stride(0), y.stride(0), w.k_padded // 32)
    meta = dict(BM=triton.next_power_of_2(m), HAS_BIAS=bias is not None, EVEN_K=w.k % 8 == 0,
                INTERPRET=is_interpreter(), SWIZZLED=layout_code(w))
    if cfg is None:
        _gemv_fma_tuned[fma_grid(n, k_words)](*args, **meta)
    else:
        _gemv_fma_kernel[fma_grid(n, k_words)(cfg.meta())](*args, **meta, **cfg.meta(), num_warps=cfg.num_warps,
                                                           num_stages=cfg.num_stages)
    return y


def mxfp4_gemv(
    x: torch.Tensor,
    w: MXFP4Tensor,
    bias: torch.Tensor | None = None,
    *,
    variant: str | None = None,
    config: MatmulConfig | FmaConfig | MmaConfig | None = None,
) -> torch.Tensor:
    """``x[..., K]`` (at most 16 rows in all) times MXFP4 ``w[N, K]``: ``[..., N]`` in x's dtype.

    ``variant`` defaults, for an "fma8" weight, to "mma" at one 16-bit row of K > 4096
    (``MMA_MIN_K_BLOCKS``), "fma" up to ``FMA_MAX_M`` rows, then "dequant_dot"; "dot_scaled"
    for an "ocp" one. ``config``: an ``FmaConfig`` for "fma" (default: autotuned on CUDA), an
    ``MmaConfig`` for "mma" (default: fixed, ``gemv_mma_default``), a ``MatmulConfig`` for the others.
    """
    check_operands(x, w, bias)
    rows = x.numel() // max(1, w.k)
    if variant is None:
        if w.layout not in FMA8_LAYOUTS:
            variant = "dot_scaled"
        else:
            # The tensor-core decode multiplies bf16 operands: fp32 activations keep the exact CUDA cores.
            one_row_mma = rows == 1 and w.k_padded // 32 >= MMA_MIN_K_BLOCKS and x.dtype != torch.float32
            variant = "mma" if one_row_mma else "fma" if rows <= FMA_MAX_M else "dequant_dot"
    if variant not in GEMV_VARIANTS + ONE_ROW_VARIANTS:
        raise ValueError(f"variant must be one of {GEMV_VARIANTS + ONE_ROW_VARIANTS}, got {variant!r}")
    if variant in ("fma", "mma") and w.layout not in FMA8_LAYOUTS:
        raise ValueError(f"the {variant} variant reads the fma8 layout: convert once with "
                         "quartet.kernels.mxfp4.layout.to_layout")
    if not can_launch(x):
        raise RuntimeError("mxfp4_gemv needs CUDA tensors (or TRITON_INTERPRET=1 on the CPU); use mxfp4_linear")
    x2 = x.reshape(-1, w.k)
    m = x2.shape[0]
    if m > DECODE_MAX_M:
        raise ValueError(f"mxfp4_gemv takes at most {DECODE_MAX_M} rows, got {m}; use mxfp4_gemm")
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    if variant == "mma":
        if m != 1:
            raise ValueError(f"the mma variant takes one row, got {m}; use fma or dequant_dot")
        if config is not None and not isinstance(config, MmaConfig):
            raise TypeError("the mma variant takes an MmaConfig")
        y = gemv_mma(x2, w, bias, config or gemv_mma_default(w.n, w.k_padded // 32, device_sms(x),
                                                            w.layout == "fma8t"))
    elif variant == "fma":
        if m > FMA_ROWS:
            raise ValueError(f"the fma variant takes at most {FMA_ROWS} rows, got {m}; use dequant_dot")
        if config is not None and not isinstance(config, FmaConfig):
            raise TypeError("the fma variant takes an FmaConfig")
        y = _launch_fma(x2, w, bias, config)
    else:
        if config is not None and not isinstance(config, MatmulConfig):
            raise TypeError(f"the {variant} variant takes a MatmulConfig")
        cfg = config or decode_config(m, w.n, w.k_padded, device_sms(x), variant)
        y = launch_matmul(x2, w, bias, dataclasses.replace(cfg, mode=variant))
    return y.reshape(*x.shape[:-1], w.n)


def mxfp4_gemv_torch(x: torch.Tensor, w: MXFP4Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """The oracle for ``mxfp4_gemv``: dequantize, fp32 matmul, cast back."""
    return mxfp4_linear_torch(x, w, bias)
