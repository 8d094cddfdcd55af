"""The Triton kernel of ``router.route``: one program per token."""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _route_kernel(
    x_ptr, w_ptr, b_ptr, ids_ptr, wts_ptr, E, H, stride_x,
    K: tl.constexpr, BE: tl.constexpr, BH: tl.constexpr, BK: tl.constexpr, HAS_BIAS: tl.constexpr,
):
    t = tl.program_id(0).to(tl.int64)
    e = tl.arange(0, BE)
    e_ok = e < E
    acc = tl.zeros((BE,), tl.float32)
    for start in range(0, H, BH):
        h = start + tl.arange(0, BH)
        h_ok = h < H
        xv = tl.load(x_ptr + t * stride_x + h, mask=h_ok, other=0.0).to(tl.float32)
        w = tl.load(w_ptr + e[:, None] * H + h[None, :], mask=e_ok[:, None] & h_ok[None, :], other=0.0)
        acc += tl.sum(w.to(tl.float32) * xv[None, :], axis=1)
    if HAS_BIAS:
        acc += tl.load(b_ptr + e, mask=e_ok, other=0.0).to(tl.float32)
    # The GEMM would hand back logits in the model dtype: round the same way before ranking.
    logits = tl.where(e_ok, acc.to(x_ptr.dtype.element_ty).to(tl.float32), float("-inf"))
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


def launch_route(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    t, h = x.shape
    e = weight.shape[0]
    if x.stride(-1) != 1:
        x = x.contiguous()
    weight = weight.contiguous()
    ids = torch.empty((t, k), dtype=torch.int32, device=x.device)
    wts = torch.empty((t, k), dtype=torch.float32, device=x.device)
    be = triton.next_power_of_2(e)
    _route_kernel[(t,)](
        x, weight, bias if bias is not None else weight, ids, wts, e, h, x.stride(0),
        K=k, BE=be, BH=max(32, min(256, 8192 // be)), BK=triton.next_power_of_2(k), HAS_BIAS=bias is not None,
        num_warps=4,
    )
    return ids, wts
