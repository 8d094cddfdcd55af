"""The Triton kernel of ``norm.add_rmsnorm``: one program per row, the whole row in registers."""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _add_rmsnorm_kernel(
    x_ptr, r_ptr, w_ptr, y_ptr, r_out_ptr, N, stride_x, stride_r, eps,
    HAS_RES: tl.constexpr, BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK)
    mask = offs < N
    v = tl.load(x_ptr + row * stride_x + offs, mask=mask, other=0.0).to(tl.float32)
    if HAS_RES:
        v += tl.load(r_ptr + row * stride_r + offs, mask=mask, other=0.0).to(tl.float32)
        # Round the residual as a separate add would, then normalise the rounded value.
        v = v.to(r_out_ptr.dtype.element_ty)
        tl.store(r_out_ptr + row * N + offs, v, mask=mask)
        v = v.to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(v * v, axis=0) / N + eps)
    w = tl.load(w_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(y_ptr + row * N + offs, (v * rstd * w).to(y_ptr.dtype.element_ty), mask=mask)


def launch_add_rmsnorm(
    x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    rows, n = x.shape
    if x.stride(-1) != 1:
        x = x.contiguous()
    y = torch.empty((rows, n), dtype=x.dtype, device=x.device)
    if residual is None:
        r_out, r_in = x, x
    else:
        r_in = residual if residual.stride(-1) == 1 else residual.contiguous()
        r_out = torch.empty((rows, n), dtype=x.dtype, device=x.device)
    block = triton.next_power_of_2(n)
    _add_rmsnorm_kernel[(rows,)](
        x, r_in, weight, y, r_out, n, x.stride(0), r_in.stride(0), eps,
        HAS_RES=residual is not None, BLOCK=block, num_warps=4 if block <= 4096 else 8,
    )
    return y, r_out
