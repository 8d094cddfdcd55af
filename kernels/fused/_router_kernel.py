"""The Triton kernel of ``router.route``'s top-k and softmax: one program per token."""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _topk_softmax_kernel(logits_ptr, ids_ptr, wts_ptr, E, stride_t, K: tl.constexpr, BE: tl.constexpr,
                         BK: tl.constexpr):
    t = tl.program_id(0).to(tl.int64)
    e = tl.arange(0, BE)
    e_ok = e < E
    logits = tl.load(logits_ptr + t * stride_t + e, mask=e_ok, other=float("-inf")).to(tl.float32)
    slot = tl.arange(0, BK)
    top = tl.full((BK,), float("-inf"), tl.float32)
    for i in tl.static_range(K):
        best = tl.max(logits, axis=0)
        # NaN logits match nothing: clamp so a broken row still names a real expert (no stray reads).
        pick = tl.minimum(tl.min(tl.where(logits == best, e, BE), axis=0), E - 1)
        tl.store(ids_ptr + t * K + i, pick.to(tl.int32))
        top = tl.where(slot == i, best, top)
        logits = tl.where(e == pick, float("-inf"), logits)
    p = tl.exp(top - tl.max(top, axis=0))
    p = p / tl.sum(p, axis=0)
    tl.store(wts_ptr + t * K + slot, p, mask=slot < K)


def launch_topk_softmax(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``logits`` [T, E] -> (ids int32 [T, k], weights fp32 [T, k])."""
    t, e = logits.shape
    if logits.stride(-1) != 1:
        logits = logits.contiguous()
    ids = torch.empty((t, k), dtype=torch.int32, device=logits.device)
    wts = torch.empty((t, k), dtype=torch.float32, device=logits.device)
    _topk_softmax_kernel[(t,)](logits, ids, wts, e, logits.stride(0), K=k, BE=triton.next_power_of_2(e),
                               BK=triton.next_power_of_2(k), num_warps=1)  # fmt: skip
    return ids, wts
