"""A small router: ``logits = x W^T + b``, the top ``k`` experts per token, softmax over those k.

gpt-oss routes with 32 experts over 2880 features. For a decode batch (up to
``SPLITK_MAX_TOKENS`` tokens) the 184 KB router weight is read by one program per
128-feature slice (a kernel with one program per token took 44 us on an H100;
cuBLAS took 6 us in two launches), and the last slice to arrive for a token sums the
token's slices, rounds the logits to the model dtype as a GEMM's output would be, and
ranks them, in the same launch; for more tokens cuBLAS computes the logits and a
top-k kernel ranks them with the same code. Ranking is k passes of
max-and-mask (ties go to the lower expert id), then the softmax in fp32. Returns
``(ids int32 [T, k], weights fp32 [T, k])``, ids sorted by logit, highest first,
like ``torch.topk``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from quartet.kernels.fused._launch import use_triton


#: Up to this many tokens the router GEMV is split over features in Triton; past it, one cuBLAS GEMM.
SPLITK_MAX_TOKENS = 64


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
    if not use_triton(x) or x.shape[0] == 0:
        return route_torch(x, weight, bias, k)
    from quartet.kernels.fused._router_kernel import launch_route_splitk, launch_topk_softmax

    if x.shape[0] <= SPLITK_MAX_TOKENS:
        return launch_route_splitk(x, weight, bias, k)
    return launch_topk_softmax(F.linear(x, weight, bias), k)
