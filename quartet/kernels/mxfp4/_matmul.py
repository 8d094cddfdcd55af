"""The one MXFP4 tensor-core matmul kernel behind the decode and prefill dot variants.

``y[M, N] = x[M, K] @ W[N, K]^T (+ bias)``: bf16 in and out, fp32 accumulation. The
weight is the left operand of the tile product (``acc[BN, BM] = W_tile @ x_tile^T``), so
its canonical MXFP4 layout (``[N, K/2]`` codes, ``[N, K/32]`` scales) is exactly what
``tl.dot_scaled`` takes, and on Hopper the dequantized tile feeds the tensor cores from
registers. Decode uses BM = 16 (rows past M are masked) and split-K.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from quartet.kernels.mxfp4._env import is_interpreter
from quartet.kernels.mxfp4._epilogue import store_or_reduce
from quartet.kernels.mxfp4._launch import MODES, MatmulConfig, splitk_buffers
from quartet.kernels.mxfp4._tile import mx_k_loop, row_starts
from quartet.kernels.mxfp4.format import MXFP4Tensor
from quartet.kernels.mxfp4.layout import layout_code


@triton.jit
def _matmul_kernel(
    x_ptr, wq_ptr, ws_ptr, b_ptr, y_ptr, part_ptr, cnt_ptr,
    M, N, K, stride_xm, stride_ym, KP_BLOCKS, TILES_PER_SPLIT,
    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, SPLIT_K: tl.constexpr, GROUP: tl.constexpr,
    HAS_BIAS: tl.constexpr, EVEN_K: tl.constexpr, MODE: tl.constexpr, SWIZZLED: tl.constexpr,
    INTERPRET: tl.constexpr,
):
    pid = tl.program_id(0)
    pid_s = tl.program_id(1)
    num_n = tl.cdiv(N, BN)
    num_m = tl.cdiv(M, BM)
    # Programs next to each other share a band of GROUP weight tiles and walk the
    # activation tiles, so a weight tile is read from DRAM once and then hit in L2.
    band = pid // (GROUP * num_m)
    first_n = band * GROUP
    band_size = tl.minimum(num_n - first_n, GROUP)
    pid_n = first_n + (pid % band_size)
    pid_m = (pid % (GROUP * num_m)) // band_size

    offs_n = pid_n * BN + tl.arange(0, BN)
    n_ok = offs_n < N
    offs_m = pid_m * BM + tl.arange(0, BM)
    m_ok = offs_m < M
    x_rows = x_ptr + offs_m.to(tl.int64) * stride_xm
    wq_rows, ws_rows, r8 = row_starts(wq_ptr, ws_ptr, offs_n, KP_BLOCKS, SWIZZLED)

    t0 = pid_s * TILES_PER_SPLIT
    t1 = tl.minimum(t0 + TILES_PER_SPLIT, tl.cdiv(KP_BLOCKS * 32, BK))
    acc = tl.zeros((BN, BM), dtype=tl.float32)
    acc = mx_k_loop(acc, x_rows, m_ok, wq_rows, ws_rows, r8, n_ok, t0, t1, K, KP_BLOCKS,
                    BN, BK, EVEN_K, MODE, SWIZZLED, INTERPRET)
    store_or_reduce(acc, y_ptr, b_ptr, part_ptr, cnt_ptr, offs_n, n_ok, offs_m, m_ok, M, N, stride_ym,
                    pid_m * num_n + pid_n, pid_s, SPLIT_K, SPLIT_K > 1, HAS_BIAS, INTERPRET)


def check_operands(x: torch.Tensor, w: MXFP4Tensor, bias: torch.Tensor | None) -> None:
    """Informative errors before any launch."""
    if w.blocks.dim() != 3:
        raise ValueError(f"weight must be one matrix [N, K], got shape {w.shape}")
    if x.shape[-1] != w.k:
        raise ValueError(f"x has K={x.shape[-1]} but the weight has K={w.k}")
    if x.dtype not in (torch.bfloat16, torch.float16, torch.float32):
        raise TypeError(f"x must be bf16, fp16 or fp32, got {x.dtype}")
    if x.device != w.device:
        raise ValueError(f"x is on {x.device} but the weight is on {w.device}")
    if bias is not None and (bias.shape != (w.n,) or bias.device != w.device):
        raise ValueError(f"bias must be [{w.n}] on {w.device}, got {tuple(bias.shape)} on {bias.device}")


def code_pointer(w: MXFP4Tensor) -> torch.Tensor:
    """What a kernel indexes: bytes for "ocp", int32 words for "fma8" and "fma8t"."""
    return w.blocks.view(torch.int32) if w.layout != "ocp" else w.blocks


def split_plan(k_padded: int, bk: int, split_k: int) -> tuple[int, int]:
    """(splits, K tiles per split), with no empty split."""
    k_tiles = triton.cdiv(k_padded, bk)
    per_split = triton.cdiv(k_tiles, max(1, min(split_k, k_tiles)))
    return triton.cdiv(k_tiles, per_split), per_split


def launch_matmul(x2: torch.Tensor, w: MXFP4Tensor, bias: torch.Tensor | None, cfg: MatmulConfig) -> torch.Tensor:
    """``x2``: ``[M, K]`` with unit stride along K. Returns ``[M, N]`` in x2's dtype."""
    if cfg.mode == "dot_scaled" and w.layout != "ocp":
        raise ValueError(f"dot_scaled reads the ocp layout, this weight is {w.layout!r}")
    m, n = x2.shape[0], w.n
    y = torch.empty((m, n), dtype=x2.dtype, device=x2.device)
    if m == 0 or n == 0:
        return y
    split, per_split = split_plan(w.k_padded, cfg.bk, cfg.split_k)
    num_tiles = triton.cdiv(n, cfg.bn) * triton.cdiv(m, cfg.bm)
    part, cnt = splitk_buffers(y, split, num_tiles)
    even_k = w.k == w.k_padded and w.k_padded % cfg.bk == 0
    _matmul_kernel[(num_tiles, split)](
        x2, code_pointer(w), w.scales, bias if bias is not None else y, y, part, cnt,
        m, n, w.k, x2.stride(0), y.stride(0), w.k_padded // 32, per_split,
        BM=cfg.bm, BN=cfg.bn, BK=cfg.bk, SPLIT_K=split, GROUP=cfg.group,
        HAS_BIAS=bias is not None, EVEN_K=even_k, MODE=MODES[cfg.mode], SWIZZLED=layout_code(w),
        INTERPRET=is_interpreter(), num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )
    return y
