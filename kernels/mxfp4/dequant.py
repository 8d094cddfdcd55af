"""Dequantize MXFP4 to bf16 or fp32 with a Triton kernel; ``dequantize_torch`` is the oracle.

The result is bit-exact with the reference (every MXFP4 value is representable in
bf16 and fp32, and the scale multiply is by a power of two), -0.0 and NaN included.
Either code layout ("ocp" or "fma8") is read.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.mxfp4._env import can_launch, is_interpreter
from kernels.mxfp4._matmul import code_pointer
from kernels.mxfp4._tile import cast_out, dequant_tile, load_codes
from kernels.mxfp4.format import MXFP4Tensor, dequantize_torch

__all__ = ["dequantize_torch", "dequantize_triton"]

_OUT_DTYPES = (torch.float32, torch.bfloat16)


@triton.jit
def _dequant_kernel(
    wq_ptr, ws_ptr, out_ptr, R, K, KP_BLOCKS,
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
    tl.store(out_ptr + rows[:, None].to(tl.int64) * K + cols[None, :], cast_out(w, out_ptr.dtype.element_ty, INTERPRET),
             mask=row_ok[:, None] & (cols < K)[None, :])


def dequantize_triton(w: MXFP4Tensor, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """MXFP4 ``[..., N, k]`` -> dense ``[..., N, k]`` in ``dtype`` (bf16 or fp32), on the kernel."""
    if dtype not in _OUT_DTYPES:
        raise ValueError(f"dequantize writes bf16 or fp32, not {dtype}")
    if not can_launch(w.blocks):
        raise RuntimeError("dequantize_triton needs a CUDA tensor (or TRITON_INTERPRET=1 on the CPU)")
    w = w.contiguous()
    rows = w.scales.numel() // (w.k_padded // 32)
    out = torch.empty((*w.shape[:-1], w.k), dtype=dtype, device=w.device)
    if out.numel() == 0:
        return out
    br, bk = 32, 256
    grid = (triton.cdiv(rows, br), triton.cdiv(w.k_padded, bk))
    _dequant_kernel[grid](code_pointer(w), w.scales, out, rows, w.k, w.k_padded // 32,
                          BR=br, BK=bk, SWIZZLED=w.layout == "fma8", INTERPRET=is_interpreter(), num_warps=4)
    return out
