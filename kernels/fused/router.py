"""A small router: ``logits = x W^T + b``, the top ``k`` experts per token, softmax over those k.

gpt-oss routes with 32 experts over 2880 features: the matmul is tiny, but in torch
it is one GEMM, a cast, a top-k and a softmax, each its own launch. The kernel does
a token per program: the fp32 dot products, the logits rounded to the model dtype
(as the GEMM's output would be), k passes of max-and-mask (ties go to the lower
expert id), and the softmax. Returns ``(ids int32 [T, k], weights fp32 [T, k])``,
ids sorted by logit, highest first, like ``torch.topk``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kernels.fused._launch import use_triton

#: Past this many tokens one GEMM beats re-reading the router weight per token.
MAX_FUSED_TOKENS = 256


def route_torch(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference: ``F.linear`` in x's dtype, then top-k and softmax in fp32."""
    top = torch.topk(F.linear(x, weight, bias).float(), k, dim=-1, sorted=True)
    return top.indices.to(torch.int32), torch.softmax(top.values, dim=-1)


def route(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` [T, H], ``weight`` [E, H] -> (ids int32 [T, k], weights fp32 [T, k])."""
    if x.dim() != 2 or weight.dim() != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"x [T, H] and weight [E, H] must share H, got {tuple(x.shape)} and {tuple(weight.shape)}")
    if not 0 < k <= weight.shape[0]:
        raise ValueError(f"k must be between 1 and {weight.shape[0]}, got {k}")
    if not use_triton(x) or not 0 < x.shape[0] <= MAX_FUSED_TOKENS:
        return route_torch(x, weight, bias, k)
    from kernels.fused._router_kernel import launch_route

    return launch_route(x, weight, bias, k)
