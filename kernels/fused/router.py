"""A small router: ``logits = x W^T + b``, the top ``k`` experts per token, softmax over those k.

gpt-oss routes with 32 experts over 2880 features. The logits come from one cuBLAS
call (a kernel that reads the 184 KB router weight from a single program per token
took 44 us on an H100, against a few for cuBLAS, which spreads the read over the
chip); the top-k and the softmax, three torch launches, are one small kernel here:
per token, k passes of max-and-mask over the logits as the GEMM returned them in the
model dtype (ties go to the lower expert id), then the softmax in fp32. Returns
``(ids int32 [T, k], weights fp32 [T, k])``, ids sorted by logit, highest first,
like ``torch.topk``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kernels.fused._launch import use_triton


def topk_softmax_torch(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    top = torch.topk(logits.float(), k, dim=-1, sorted=True)
    return top.indices.to(torch.int32), torch.softmax(top.values, dim=-1)


def route_torch(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference: ``F.linear`` in x's dtype, then top-k and softmax in fp32."""
    return topk_softmax_torch(F.linear(x, weight, bias), k)


def route(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` [T, H], ``weight`` [E, H] -> (ids int32 [T, k], weights fp32 [T, k])."""
    if x.dim() != 2 or weight.dim() != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"x [T, H] and weight [E, H] must share H, got {tuple(x.shape)} and {tuple(weight.shape)}")
    if not 0 < k <= weight.shape[0]:
        raise ValueError(f"k must be between 1 and {weight.shape[0]}, got {k}")
    logits = F.linear(x, weight, bias)
    if not use_triton(x) or x.shape[0] == 0:
        return topk_softmax_torch(logits, k)
    from kernels.fused._router_kernel import launch_topk_softmax

    return launch_topk_softmax(logits, k)
