"""Residual add + RMSNorm in one pass: ``r = x + residual; y = r * rsqrt(mean(r^2) + eps) * weight``.

The norm runs in fp32 with an fp32 weight and casts once at the end (gpt-oss keeps
its norms in fp32, as Hugging Face does). The new residual is rounded to the input
dtype before the norm reads it, exactly as a separate bf16 add followed by the norm
would, so the fused and unfused paths see the same residual stream.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from quartet.kernels.fused._launch import use_triton


def add_rmsnorm_torch(
    x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference: ``(rmsnorm(x + residual), x + residual)``; with no residual, ``(rmsnorm(x), x)``."""
    r = x if residual is None else residual + x
    return F.rms_norm(r.float(), (r.shape[-1],), weight.float(), eps).to(x.dtype), r


def add_rmsnorm(
    x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` [T, N] (and ``residual`` like it, or None) -> (normed [T, N] in x's dtype, new residual)."""
    if x.dim() != 2 or x.shape[-1] != weight.shape[-1]:
        raise ValueError(f"x must be [T, {weight.shape[-1]}], got {tuple(x.shape)}")
    if residual is not None and residual.shape != x.shape:
        raise ValueError(f"residual {tuple(residual.shape)} must match x {tuple(x.shape)}")
    if not use_triton(x) or x.shape[0] == 0:
        return add_rmsnorm_torch(x, residual, weight, eps)
    from quartet.kernels.fused._norm_kernel import launch_add_rmsnorm

    return launch_add_rmsnorm(x, residual, weight, eps)
