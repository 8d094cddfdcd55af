"""Decode GEMV / skinny GEMM: ``x[M, K] @ W^T`` for M = 1..16, bf16 in and out.

Variants (all fp32 accumulation, split-K fixed up in the same launch):

* ``fma``: CUDA cores over the "fma8" layout (``layout.py``): per weight a shift, a
  mask and one FMA, the block scale once per word. A program holds one K slice of the
  activations in registers and streams row chunks through it (``_fma.py``). Made for
  M = 1 (one FMA per weight and row, so its cost grows with M).
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
from kernels.mxfp4._fma import FMA_CONFIGS, FmaConfig, fma_default, fma_grid, max_chunks, max_slices, use_autotune
from kernels.mxfp4._launch import DECODE_MAX_M, FMA_MAX_M, MatmulConfig, decode_config, splitk_counters
from kernels.mxfp4._matmul import check_operands, code_pointer, launch_matmul
from kernels.mxfp4._tile import fma_chunk, fma_chunk_vec, load_x_slice, load_x_vec
from kernels.mxfp4.format import MXFP4Tensor
from kernels.mxfp4.reference import mxfp4_linear_torch

__all__ = ["GEMV_VARIANTS", "mxfp4_gemv", "mxfp4_gemv_torch"]

GEMV_VARIANTS = ("fma", "dot_scaled", "dequant_dot")


@triton.jit
def _gemv_fma_kernel(
    x_ptr, w_ptr, ws_ptr, b_ptr, y_ptr, part_ptr, cnt_ptr,
    M, N, K, stride_xm, stride_ym, KP_BLOCKS,
    BM: tl.constexpr, HAS_BIAS: tl.constexpr, INTERPRET: tl.constexpr,
    BN: tl.constexpr, KW: tl.constexpr, CHUNKS: tl.constexpr,
):
    pid_r = tl.program_id(0)
    pid_s = tl.program_id(1)
    n_split = tl.num_programs(1)
    offs_m = tl.arange(0, BM)
    m_ok = offs_m < M
    c = pid_s * KW + tl.arange(0, KW)
    c_ok = c < KP_BLOCKS * 4
    if BM == 1:
        x0, x1, x2, x3, x4, x5, x6, x7 = load_x_vec(x_ptr, c, K)
    else:
        x0, x1, x2, x3, x4, x5, x6, x7 = load_x_slice(x_ptr + offs_m.to(tl.int64) * stride_xm, m_ok, c, K, BM)
    n_chunks = tl.cdiv(N, BN)
    for i in range(CHUNKS):
        chunk = pid_r * CHUNKS + i
        if chunk < n_chunks:
            offs_n = chunk * BN + tl.arange(0, BN)
            n_ok = offs_n < N
            w_rows = w_ptr + offs_n[:, None].to(tl.int64) * (KP_BLOCKS * 4)
            ws_rows = ws_ptr + offs_n[:, None].to(tl.int64) * KP_BLOCKS
            if BM == 1:
                acc = fma_chunk_vec(w_rows, ws_rows, n_ok, c, c_ok, x0, x1, x2, x3, x4, x5, x6, x7)[:, None]
            else:
                acc = fma_chunk(w_rows, ws_rows, n_ok, c, c_ok, x0, x1, x2, x3, x4, x5, x6, x7, BN, KW, BM)
            store_or_reduce(acc, y_ptr, b_ptr, part_ptr, cnt_ptr, offs_n, n_ok, offs_m, m_ok, M, N, stride_ym,
                            chunk, pid_s, n_split, True, HAS_BIAS, INTERPRET)


_gemv_fma_tuned = triton.autotune(configs=FMA_CONFIGS, key=["M", "N", "K"])(_gemv_fma_kernel)


def _launch_fma(x2: torch.Tensor, w: MXFP4Tensor, bias: torch.Tensor | None, cfg: FmaConfig | None) -> torch.Tensor:
    m, n = x2.shape[0], w.n
    k_words = w.k_padded // 8
    if cfg is None and not use_autotune():
        cfg = fma_default(n, k_words, device_sms(x2))
    y = torch.empty((m, n), dtype=x2.dtype, device=x2.device)
    part = torch.empty((max_slices(k_words, cfg), m, n), dtype=torch.float32, device=x2.device)
    cnt = splitk_counters(x2.device, max_chunks(n, cfg))
    args = (x2, code_pointer(w), w.scales, bias if bias is not None else y, y, part, cnt,
            m, n, w.k, x2.stride(0), y.stride(0), w.k_padded // 32)
    meta = dict(BM=triton.next_power_of_2(m), HAS_BIAS=bias is not None, INTERPRET=is_interpreter())
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
    config: MatmulConfig | FmaConfig | None = None,
) -> torch.Tensor:
    """``x[..., K]`` (at most 16 rows in all) times MXFP4 ``w[N, K]``: ``[..., N]`` in x's dtype.

    ``variant`` defaults to "fma" for an "fma8" weight (up to ``FMA_MAX_M`` rows, then
    "dequant_dot") and "dot_scaled" for an "ocp" one. ``config``: an ``FmaConfig`` for
    "fma" (default: autotuned on CUDA), a ``MatmulConfig`` for the others.
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
