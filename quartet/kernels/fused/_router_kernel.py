"""The Triton kernels of ``router.route``: a split-K router GEMV for a few tokens, and the top-k/softmax.

For a decode batch the router's weight (32 x 2880 in gpt-oss, 184 KB) is read by many
programs at once, each over one slice of the features, writing fp32 partial logits; the
last slice to arrive for a token sums the token's slices (a fixed order: deterministic),
adds the bias, rounds to the model dtype as a GEMM's output would be, then ranks. For many
tokens the logits come from cuBLAS and a top-k kernel ranks them (``_rank``, the same code).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from quartet.kernels.mxfp4._epilogue import arrive, gather_tile, release
from quartet.kernels.mxfp4._launch import splitk_counters

#: Features per program of the split-K router GEMV.
SLICE = 128


@triton.jit
def _router_partial_kernel(
    x_ptr, w_ptr, part_ptr, cnt_ptr, bias_ptr, ids_ptr, wts_ptr, T, E, H, stride_x,
    K: tl.constexpr, BE: tl.constexpr, BH: tl.constexpr, BK: tl.constexpr, SLICES_P2: tl.constexpr,
    HAS_BIAS: tl.constexpr, ROUND: tl.constexpr, OUT_DTYPE: tl.constexpr,
):
    """One feature slice of one token's logits; the slice that arrives last for its token sums
    all the token's slices (every load in flight, a fixed reduction tree: deterministic) and ranks
    them, so a decode step routes in one launch instead of two (a second launch of a few
    microseconds per layer was 4 % of a batch-1 step on an H100)."""
    t = tl.program_id(0)
    s = tl.program_id(1)
    e = tl.arange(0, BE)
    e_ok = e < E
    h = s * BH + tl.arange(0, BH)
    h_ok = h < H
    xv = tl.load(x_ptr + t.to(tl.int64) * stride_x + h, mask=h_ok, other=0.0).to(tl.float32)
    w = tl.load(w_ptr + e[:, None] * H + h[None, :], mask=e_ok[:, None] & h_ok[None, :], other=0.0)
    acc = tl.sum(w.to(tl.float32) * xv[None, :], axis=1)
    tl.store(part_ptr + (s * T + t) * BE + e, acc)
    if arrive(cnt_ptr, t, tl.num_programs(1)):
        total = gather_tile(part_ptr, t * BE + e, e_ok, T * BE, tl.num_programs(1), SLICES_P2)
        _rank(total, e, e_ok, bias_ptr, ids_ptr, wts_ptr, t.to(tl.int64), E, K, BE, BK, HAS_BIAS, ROUND, OUT_DTYPE)
        release(cnt_ptr, t)


@triton.jit
def _topk_softmax_kernel(
    logits_ptr, ids_ptr, wts_ptr, E, stride_t,
    K: tl.constexpr, BE: tl.constexpr, BK: tl.constexpr,
):
    t = tl.program_id(0).to(tl.int64)
    e = tl.arange(0, BE)
    e_ok = e < E
    acc = tl.load(logits_ptr + t * stride_t + e, mask=e_ok, other=0.0).to(tl.float32)
    _rank(acc, e, e_ok, logits_ptr, ids_ptr, wts_ptr, t, E, K, BE, BK, False, False, tl.float32)


@triton.jit
def _rank(acc, e, e_ok, bias_ptr, ids_ptr, wts_ptr, t, E, K: tl.constexpr, BE: tl.constexpr, BK: tl.constexpr,
          HAS_BIAS: tl.constexpr, ROUND: tl.constexpr, OUT_DTYPE: tl.constexpr):
    """Token ``t``'s fp32 logits ``acc`` [BE] (+ bias) -> its top-k ids and their softmax weights, stored."""
    if HAS_BIAS:
        acc += tl.load(bias_ptr + e, mask=e_ok, other=0.0).to(tl.float32)
    if ROUND:  # a GEMM would have handed back logits in the model dtype: rank what it would rank
        acc = acc.to(OUT_DTYPE).to(tl.float32)
    logits = tl.where(e_ok, acc, float("-inf"))
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


_TL_DTYPES = {torch.bfloat16: tl.bfloat16, torch.float16: tl.float16, torch.float32: tl.float32}


def _outputs(t: int, k: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.empty((t, k), dtype=torch.int32, device=device),
            torch.empty((t, k), dtype=torch.float32, device=device))  # fmt: skip


def launch_topk_softmax(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``logits`` [T, E] (bias already in) -> (ids int32 [T, k], weights fp32 [T, k])."""
    t, e = logits.shape
    if logits.stride(-1) != 1:
        logits = logits.contiguous()
    ids, wts = _outputs(t, k, logits.device)
    _topk_softmax_kernel[(t,)](logits, ids, wts, e, logits.stride(0), K=k, BE=triton.next_power_of_2(e),
                               BK=triton.next_power_of_2(k), num_warps=1)
    return ids, wts


def launch_route_splitk(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """x [T, H] @ weight [E, H]^T (+ bias), top-k, softmax: one launch, no cuBLAS."""
    t, h = x.shape
    e = weight.shape[0]
    if x.stride(-1) != 1:
        x = x.contiguous()
    weight = weight.contiguous()
    be = triton.next_power_of_2(e)
    slices = triton.cdiv(h, SLICE)
    part = torch.empty((slices, t, be), dtype=torch.float32, device=x.device)
    ids, wts = _outputs(t, k, x.device)
    _router_partial_kernel[(t, slices)](
        x, weight, part, splitk_counters(x.device, t), bias if bias is not None else part, ids, wts, t, e, h,
        x.stride(0), K=k, BE=be, BH=SLICE, BK=triton.next_power_of_2(k), SLICES_P2=triton.next_power_of_2(slices),
        HAS_BIAS=bias is not None, ROUND=x.dtype != torch.float32, OUT_DTYPE=_TL_DTYPES[x.dtype], num_warps=4,
    )  # fmt: skip
    return ids, wts
