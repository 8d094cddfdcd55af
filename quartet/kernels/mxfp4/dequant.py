"""Dequantize MXFP4 to bf16 or fp32 with a Triton kernel; ``dequantize_torch`` is the oracle.

The result is bit-exact with the reference (every MXFP4 value is representable in
bf16 and fp32, and the scale multiply is by a power of two), -0.0 and NaN included.
Any code layout ("ocp", "fma8", "fma8t") is read.

``out`` may be a strided view of a larger buffer (``buf[:, :I]`` of a ``[E, 2I, H]``
gate_up), so the prefill MoE writes gate and up into one matrix for a single GEMM
without a copy. The pass moves 0.53 B in and 2 B out per weight: it is bound by the
writes, so its tiles (``DequantTiles``) are a bandwidth question measured on the GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from quartet.kernels.mxfp4._env import can_launch, is_interpreter
from quartet.kernels.mxfp4._matmul import code_pointer
from quartet.kernels.mxfp4._tile import cast_out, dequant_tile, load_codes, row_starts
from quartet.kernels.mxfp4.format import MXFP4Tensor
from quartet.kernels.mxfp4.reference import dequantize_torch
from quartet.kernels.mxfp4.layout import layout_code

__all__ = ["DEQUANT_TILES", "DEQUANT_TILES_TILED", "DequantTiles", "dequantize_torch", "dequantize_triton"]

_OUT_DTYPES = (torch.float32, torch.bfloat16)


@dataclass(frozen=True, slots=True)
class DequantTiles:
    """``rows`` weight rows x ``cols`` weights a program (powers of two, ``cols`` >= 64).

    H100 (docs/perf-log/engine-gpu.md "Prefill step"), a layer's gate experts (265 M weights): 4 x 2048
    0.331-0.335 ms, the earlier 32 x 256 0.395-0.398 ms. A flat variant over 32-value blocks
    (no lane idle on the 832-wide tail of a 2880-wide row) measured 0.321 ms alone and the
    same within a step, so it was not kept.
    """

    rows: int = 4
    cols: int = 2048
    num_warps: int = 4

    def __post_init__(self) -> None:
        if self.rows < 1 or self.rows & (self.rows - 1) or self.cols < 64 or self.cols & (self.cols - 1):
            raise ValueError(f"rows ({self.rows}) and cols ({self.cols}, >= 64) must be powers of two")


#: The tiles a call without ``tiles`` uses (a module setting: the step benchmark swaps it to compare).
DEQUANT_TILES = DequantTiles()
#: The same on "fma8t" codes: whole tiles of 8 rows, so a program's codes are one run of memory.
DEQUANT_TILES_TILED = DequantTiles(rows=8, cols=1024)


@triton.jit
def _dequant_kernel(
    wq_ptr, ws_ptr, out_ptr, R, K, KP_BLOCKS, ROWS_PER_GROUP, GROUP_STRIDE, ROW_STRIDE,
    BR: tl.constexpr, BK: tl.constexpr, SWIZZLED: tl.constexpr, INTERPRET: tl.constexpr,
):
    pid_r = tl.program_id(0)
    pid_k = tl.program_id(1)
    rows = pid_r * BR + tl.arange(0, BR)
    row_ok = rows < R
    wq_rows, ws_rows, r8 = row_starts(wq_ptr, ws_ptr, rows, KP_BLOCKS, SWIZZLED)
    wq, ws = load_codes(wq_rows, ws_rows, r8, row_ok, pid_k, KP_BLOCKS, BK, False, SWIZZLED)
    w = dequant_tile(wq, ws, BR, BK, SWIZZLED)
    cols = pid_k * BK + tl.arange(0, BK)
    r64 = rows.to(tl.int64)
    dst = (r64 // ROWS_PER_GROUP) * GROUP_STRIDE + (r64 % ROWS_PER_GROUP) * ROW_STRIDE
    tl.store(out_ptr + dst[:, None] + cols[None, :], cast_out(w, out_ptr.dtype.element_ty, INTERPRET),
             mask=row_ok[:, None] & (cols < K)[None, :])


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
    t = tiles or (DEQUANT_TILES_TILED if w.layout == "fma8t" else DEQUANT_TILES)
    # Rows narrower than the tile: trade columns for rows, so no program is mostly masked lanes
    # (gpt-oss's K of 2880 and 4096 keep the measured 4 x 2048).
    bk = max(64, min(t.cols, triton.next_power_of_2(w.k_padded)))
    br = t.rows * (t.cols // bk)
    grid = (triton.cdiv(rows, br), triton.cdiv(w.k_padded, bk))
    _dequant_kernel[grid](code_pointer(w), w.scales, out, rows, w.k, w.k_padded // 32, per_group, group_stride,
                          out.stride(-2), BR=br, BK=bk, SWIZZLED=layout_code(w),
                          INTERPRET=is_interpreter(), num_warps=t.num_warps)
    return out
