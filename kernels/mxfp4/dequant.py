"""Dequantize MXFP4 to bf16 or fp32 with a Triton kernel; ``dequantize_torch`` is the oracle.

The result is bit-exact with the reference (every MXFP4 value is representable in
bf16 and fp32, and the scale multiply is by a power of two), -0.0 and NaN included.
Either code layout ("ocp" or "fma8") is read.

``out`` may be a strided view of a larger buffer (``buf[:, :I]`` of a ``[E, 2I, H]``
gate_up), so the prefill MoE writes gate and up into one matrix for a single GEMM
without a copy. The pass moves 0.53 B in and 2 B out per weight: it is bound by the
writes, so its tiles (``DequantTiles``) are a bandwidth question measured on the GPU
(H100, docs/PERFORMANCE.md "Prefill step": 4 x 2048 tiles 0.335 ms for 265 M weights,
the earlier 32 x 256 ones 0.395 ms).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from kernels.mxfp4._env import can_launch, is_interpreter
from kernels.mxfp4._matmul import code_pointer
from kernels.mxfp4._tile import cast_out, dequant_tile, load_codes
from kernels.mxfp4.format import MXFP4Tensor, dequantize_torch

__all__ = ["DEQUANT_TILES", "DequantTiles", "dequantize_torch", "dequantize_triton"]

_OUT_DTYPES = (torch.float32, torch.bfloat16)


@dataclass(frozen=True, slots=True)
class DequantTiles:
    """``rows`` weight rows x ``cols`` weights a program (powers of two, ``cols`` >= 64).

    ``flat``: read the weight as one run of 32-value blocks (its rows are contiguous and K has
    no padding), ``rows x cols`` values a program, so no lane idles on a partial K tile (2880
    is 2048 + 832); a weight with padded K takes the 2-D tiles.
    """

    rows: int = 4
    cols: int = 2048
    num_warps: int = 4
    flat: bool = False

    def __post_init__(self) -> None:
        if self.rows < 1 or self.rows & (self.rows - 1) or self.cols < 64 or self.cols & (self.cols - 1):
            raise ValueError(f"rows ({self.rows}) and cols ({self.cols}, >= 64) must be powers of two")


#: The tiles a call without ``tiles`` uses (a module setting: the step benchmark swaps it to compare).
DEQUANT_TILES = DequantTiles()


@triton.jit
def _dequant_kernel(
    wq_ptr, ws_ptr, out_ptr, R, K, KP_BLOCKS, ROWS_PER_GROUP, GROUP_STRIDE, ROW_STRIDE,
    BR: tl.constexpr, BK: tl.constexpr, SWIZZLED: tl.constexpr, INTERPRET: tl.constexpr,
):
    pid_r = tl.program_id(0)
    pid_k = tl.program_id(1)
    rows = pid_r * BR + tl.arange(0, BR)
    row_ok = rows < R
    row_q = KP_BLOCKS * (4 if SWIZZLED else 16)
    wq, ws = load_codes(wq_ptr + rows[:, None].to(tl.int64) * row_q, ws_ptr + rows[:, None].to(tl.int64) * KP_BLOCKS,
                        row_ok, pid_k, KP_BLOCKS, BK, False, SWIZZLED)
    w = dequant_tile(wq, ws, BR, BK, SWIZZLED)
    cols = pid_k * BK + tl.arange(0, BK)
    r64 = rows.to(tl.int64)
    dst = (r64 // ROWS_PER_GROUP) * GROUP_STRIDE + (r64 % ROWS_PER_GROUP) * ROW_STRIDE
    tl.store(out_ptr + dst[:, None] + cols[None, :], cast_out(w, out_ptr.dtype.element_ty, INTERPRET),
             mask=row_ok[:, None] & (cols < K)[None, :])


@triton.jit
def _dequant_flat_kernel(
    wq_ptr, ws_ptr, out_ptr, NUM_BLOCKS, KP_BLOCKS, ROWS_PER_GROUP, GROUP_STRIDE, ROW_STRIDE,
    BB: tl.constexpr, SWIZZLED: tl.constexpr, INTERPRET: tl.constexpr,
):
    """``BB`` consecutive 32-value blocks: [BB, 4] fma8 words (or [BB, 16] bytes) and BB scales."""
    b = tl.program_id(0).to(tl.int64) * BB + tl.arange(0, BB)
    ok = b < NUM_BLOCKS
    per_block: tl.constexpr = 4 if SWIZZLED else 16
    wq = tl.load(wq_ptr + b[:, None] * per_block + tl.arange(0, per_block)[None, :], mask=ok[:, None], other=0)
    ws = tl.load(ws_ptr + b[:, None], mask=ok[:, None], other=0)
    w = dequant_tile(wq, ws, BB, 32, SWIZZLED)
    row = b // KP_BLOCKS
    dst = (row // ROWS_PER_GROUP) * GROUP_STRIDE + (row % ROWS_PER_GROUP) * ROW_STRIDE + (b % KP_BLOCKS) * 32
    tl.store(out_ptr + dst[:, None] + tl.arange(0, 32)[None, :], cast_out(w, out_ptr.dtype.element_ty, INTERPRET),
             mask=ok[:, None])


def dequantize_triton(w: MXFP4Tensor, dtype: torch.dtype = torch.bfloat16, *, out: torch.Tensor | None = None,
                      tiles: DequantTiles | None = None) -> torch.Tensor:
    """MXFP4 ``[..., N, k]`` -> dense ``[..., N, k]`` in ``dtype`` (bf16 or fp32), on the kernel.

    ``out``: write there instead of a new tensor: a ``[N, k]`` or ``[E, N, k]`` view in ``dtype``
    whose rows are contiguous (any row and expert strides). ``tiles``: the launch's tile shape.
    """
    if dtype not in _OUT_DTYPES:
        raise ValueError(f"dequantize writes bf16 or fp32, not {dtype}")
    if not can_launch(w.blocks):
        raise RuntimeError("dequantize_triton needs a CUDA tensor (or TRITON_INTERPRET=1 on the CPU)")
    w = w.contiguous()
    rows = w.scales.numel() // (w.k_padded // 32)
    if out is None:
        out = torch.empty((*w.shape[:-1], w.k), dtype=dtype, device=w.device)
    elif tuple(out.shape) != tuple(w.shape) or out.dtype != dtype or out.dim() > 3 or out.stride(-1) != 1:
        raise ValueError(f"out must be a {list(w.shape)} {dtype} view with contiguous rows and at most 3 dims, "
                         f"got {list(out.shape)} {out.dtype} strides {out.stride()}")
    if out.numel() == 0:
        return out
    per_group = w.shape[-2]
    group_stride = out.stride(0) if out.dim() == 3 else 0
    t = tiles or DEQUANT_TILES
    if t.flat and w.k == w.k_padded:
        blocks, bb = w.scales.numel(), t.rows * t.cols // 32
        _dequant_flat_kernel[(triton.cdiv(blocks, bb),)](
            code_pointer(w), w.scales, out, blocks, w.k_padded // 32, per_group, group_stride, out.stride(-2),
            BB=bb, SWIZZLED=w.layout == "fma8", INTERPRET=is_interpreter(), num_warps=t.num_warps)
        return out
    grid = (triton.cdiv(rows, t.rows), triton.cdiv(w.k_padded, t.cols))
    _dequant_kernel[grid](code_pointer(w), w.scales, out, rows, w.k, w.k_padded // 32, per_group, group_stride,
                          out.stride(-2), BR=t.rows, BK=t.cols, SWIZZLED=w.layout == "fma8",
                          INTERPRET=is_interpreter(), num_warps=t.num_warps)
    return out
