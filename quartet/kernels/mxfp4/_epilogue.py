"""Kernel epilogues: bias, bf16 store of a transposed ``[BN, BM]`` tile, split-K, and the MoE's sum
over each token's k slots.

Split-K in one launch: every split writes its fp32 partial to a workspace, then bumps a
per-tile counter; the split that arrives last sums the partials, finishes the tile and
resets the counter to zero for the next launch. That saves the memset and the extra
reduction launch a two-kernel split-K needs, which matters at decode where a whole
2880x2880 GEMV is a few microseconds. The partials are read with ``.cg`` (L2, not the
incoherent L1) after the counter's acquire; the ``debug_barrier`` orders every thread's
partial store before the counter's release (the pattern of CUTLASS's semaphore).
Callers must not run two launches sharing the counters concurrently (one stream).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from quartet.kernels.mxfp4._env import is_interpreter
from quartet.kernels.mxfp4._tile import cast_out


@triton.jit
def arrive(cnt_ptr, tile_id, n_split):
    """After this program's partial is stored: True for the last of ``n_split`` arrivals."""
    tl.debug_barrier()
    arrived = tl.atomic_add(cnt_ptr + tile_id, 1, sem="acq_rel", scope="gpu")
    return arrived == n_split - 1


@triton.jit
def gather(part_ptr, offs, mask, stride_split, n_split, like):
    """Sum of the ``n_split`` partials at ``offs`` (read from L2)."""
    total = tl.zeros(like.shape, tl.float32)
    for s in range(n_split):
        total += tl.load(part_ptr + s * stride_split + offs, mask=mask, other=0.0, cache_modifier=".cg")
    return total


@triton.jit
def gather_tile(part_ptr, offs, mask, stride_split, n_split, SPLIT_P2: tl.constexpr):
    """Like ``gather`` with every split's load in flight at once: a ``[SPLIT_P2, BN]`` tile
    summed over its first axis (``n_split <= SPLIT_P2``). A loop of dependent L2 round trips
    cost the last-arriving program about 0.3 us a split; with 12 splits that was the tail."""
    s = tl.arange(0, SPLIT_P2)
    ok = (s < n_split)[:, None] & mask[None, :]
    parts = tl.load(part_ptr + s[:, None] * stride_split + offs[None, :], mask=ok, other=0.0, cache_modifier=".cg")
    return tl.sum(parts, axis=0)


@triton.jit
def release(cnt_ptr, tile_id):
    tl.atomic_xchg(cnt_ptr + tile_id, 0)


@triton.jit
def store_tile(acc, y_ptr, b_ptr, offs_n, n_ok, y_rows, m_ok, HAS_BIAS: tl.constexpr, INTERPRET: tl.constexpr):
    """``y[row, n] = acc[n, row] (+ bias[n])`` in y's dtype; ``y_rows``: ``[BM]`` row pointers."""
    if HAS_BIAS:
        acc += tl.load(b_ptr + offs_n, mask=n_ok, other=0.0).to(tl.float32)[:, None]
    out = cast_out(acc, y_ptr.dtype.element_ty, INTERPRET)
    tl.store(y_rows[None, :] + offs_n[:, None], out, mask=n_ok[:, None] & m_ok[None, :])


@triton.jit
def store_or_reduce(
    acc, y_ptr, b_ptr, part_ptr, cnt_ptr, offs_n, n_ok, offs_m, m_ok, M, N, stride_ym, tile_id, pid_s, n_split,
    SPLIT: tl.constexpr, HAS_BIAS: tl.constexpr, INTERPRET: tl.constexpr,
):
    """Store the tile, or (``SPLIT``) publish it as split ``pid_s`` of ``n_split`` and finish it if last."""
    y_rows = y_ptr + offs_m.to(tl.int64) * stride_ym
    if not SPLIT:
        store_tile(acc, y_ptr, b_ptr, offs_n, n_ok, y_rows, m_ok, HAS_BIAS, INTERPRET)
    else:
        # Workspace [n_split, M, N] fp32, N contiguous so masked rows cost nothing.
        part = offs_m[None, :].to(tl.int64) * N + offs_n[:, None]
        mask = n_ok[:, None] & m_ok[None, :]
        tl.store(part_ptr + pid_s * M * N + part, acc, mask=mask)
        if arrive(cnt_ptr, tile_id, n_split):
            total = gather(part_ptr, part, mask, M * N, n_split, acc)
            store_tile(total, y_ptr, b_ptr, offs_n, n_ok, y_rows, m_ok, HAS_BIAS, INTERPRET)
            release(cnt_ptr, tile_id)


@triton.jit
def swiglu_store(g, lin, gb_ptr, lb_ptr, act_ptr, e, p, I, offs_n, n_ok, alpha, limit,
                 HAS_BIAS: tl.constexpr, INTERPRET: tl.constexpr):
    """gpt-oss's clamped SwiGLU of one (token, expert) pair's glu and linear sums (+ expert ``e``'s
    biases), stored as row ``p`` of the activations: ``glu * sigmoid(alpha * glu) * (linear + 1)``."""
    if HAS_BIAS:
        g += tl.load(gb_ptr + e * I + offs_n, mask=n_ok, other=0.0)
        lin += tl.load(lb_ptr + e * I + offs_n, mask=n_ok, other=0.0)
    g = tl.minimum(g, limit)
    lin = tl.minimum(tl.maximum(lin, -limit), limit)
    act = g * tl.sigmoid(alpha * g) * (lin + 1.0)
    tl.store(act_ptr + p.to(tl.int64) * I + offs_n, cast_out(act, act_ptr.dtype.element_ty, INTERPRET), mask=n_ok)


@triton.jit
def down_finish(y_ptr, db_ptr, ids_ptr, wts_ptr, part_ptr, t, offs_n, n_ok, H, stride_split, n_split,
                 TOPK: tl.constexpr, HAS_BIAS: tl.constexpr, INTERPRET: tl.constexpr, SPLIT_P2: tl.constexpr):
    """MoE decode down, the last-arriving program: token ``t``'s split partials summed (a fixed order
    whoever arrives last: deterministic), each expert's down bias weighted by its routing weight added,
    cast and stored."""
    y = gather_tile(part_ptr, t * H + offs_n, n_ok, stride_split, n_split, SPLIT_P2)
    if HAS_BIAS:
        for j in tl.static_range(TOPK):
            ej = tl.load(ids_ptr + t * TOPK + j).to(tl.int64)
            wj = tl.load(wts_ptr + t * TOPK + j).to(tl.float32)
            y += wj * tl.load(db_ptr + ej * H + offs_n, mask=n_ok, other=0.0)
    tl.store(y_ptr + t.to(tl.int64) * H + offs_n, cast_out(y, y_ptr.dtype.element_ty, INTERPRET), mask=n_ok)


@triton.jit
def _sum_slots_kernel(src_ptr, out_ptr, H, TOPK: tl.constexpr, BN: tl.constexpr, INTERPRET: tl.constexpr):
    t = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BN + tl.arange(0, BN)
    ok = offs < H
    acc = tl.load(src_ptr + t * TOPK * H + offs, mask=ok, other=0.0)
    for j in tl.static_range(1, TOPK):
        acc += tl.load(src_ptr + (t * TOPK + j) * H + offs, mask=ok, other=0.0)
    tl.store(out_ptr + t * H + offs, cast_out(acc, out_ptr.dtype.element_ty, INTERPRET), mask=ok)


def sum_slots(rows: torch.Tensor, k: int, dtype: torch.dtype) -> torch.Tensor:
    """``rows`` fp32 ``[T * k, H]`` (each token's k routed outputs, already weighted) summed over the
    k slots in slot order and cast: ``[T, H]`` in ``dtype``. One launch where ``view(T, k, H).sum(1)
    .to(dtype)`` took two (a reduction and a cast: 12 us a layer at 256 decode tokens on an H100)."""
    pairs, h = rows.shape
    out = torch.empty((pairs // k, h), dtype=dtype, device=rows.device)
    if pairs:
        bn = 1024
        _sum_slots_kernel[(pairs // k, triton.cdiv(h, bn))](rows, out, h, TOPK=k, BN=bn,
                                                             INTERPRET=is_interpreter(), num_warps=4)
    return out
