"""Paged decode attention: one new token per sequence against its cached K/V, read in place.

One program per (sequence, KV head, split): the query heads that share the KV head are the
rows of one ``tl.dot`` tile, so each K/V block is read once for all of them (GQA). The keys a
token sees, ``[max(0, len - window), len)``, are found in the kernel from ``seq_lens``; blocks
wholly outside are never touched. When batch x KV heads cannot fill the GPU, each sequence's
range is cut into ``num_splits`` equal shares (flash-decoding, Dao et al. 2023) whose partial
results a small combine kernel merges. The grid and every allocation depend on the batch, the
table width and the config only, never on the lengths' values: the op is CUDA-graph capturable.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from quartet.kernels.attention._common import LOG2E, NO_MAX, check_pool, online_softmax_step
from quartet.kernels.attention._launch import (
    DecodeConfig,
    can_launch,
    decode_config,
    device_sms,
    is_interpreter,
    pow2_at_least,
)

__all__ = ["paged_decode"]


# The block table's row stride changes from step to step (an eager step's table is as wide as its longest
# sequence, a graph's as its buffer): specializing on it (Triton's divisibility-by-16 variants) compiled new
# variants mid-serving, a 0.4-1.2 s stall each on an H100.
@triton.jit(do_not_specialize=["stride_tb"])
def _decode_kernel(
    q_ptr, k_ptr, v_ptr, table_ptr, lens_ptr, sinks_ptr, out_ptr, part_ptr, stats_ptr,
    stride_qb, stride_qh, stride_kb, stride_kt, stride_kh, stride_tb, stride_ob, stride_oh,
    qk_scale, window,
    GROUPS: tl.constexpr, G_PAD: tl.constexpr, HEAD_DIM: tl.constexpr, D_PAD: tl.constexpr,
    BLOCK_SIZE: tl.constexpr, BLOCK_N: tl.constexpr, NUM_SPLITS: tl.constexpr,
    HAS_WINDOW: tl.constexpr, HAS_SINKS: tl.constexpr, F32_DOT: tl.constexpr,
):
    seq = tl.program_id(0)
    kv_head = tl.program_id(1)
    split = tl.program_id(2)
    length = tl.load(lens_ptr + seq).to(tl.int32)
    first = 0
    if HAS_WINDOW:
        first = tl.maximum(length - window, 0)
    first_block = first // BLOCK_SIZE
    share = tl.cdiv(tl.cdiv(length, BLOCK_SIZE) - first_block, NUM_SPLITS)
    lo = (first_block + split * share) * BLOCK_SIZE
    hi = tl.minimum(lo + share * BLOCK_SIZE, length)

    rows = tl.arange(0, G_PAD)
    heads = kv_head * GROUPS + rows
    row_ok = rows < GROUPS
    dims = tl.arange(0, D_PAD)
    dim_ok = dims < HEAD_DIM
    q = tl.load(q_ptr + seq.to(tl.int64) * stride_qb + heads[:, None] * stride_qh + dims[None, :],
                mask=row_ok[:, None] & dim_ok[None, :], other=0.0)
    if F32_DOT:
        q = q.to(tl.float32)
    else:
        q = q.to(k_ptr.dtype.element_ty)

    m = tl.full((G_PAD,), NO_MAX, tl.float32)
    l = tl.zeros((G_PAD,), tl.float32)
    if HAS_SINKS:  # the sink is one more logit with no value: start the running sums from it, once per sequence
        sink = tl.load(sinks_ptr + heads, mask=row_ok, other=0.0) * 1.4426950408889634
        m = tl.where(split == 0, sink, m)
        l = tl.where(split == 0, 1.0, l)
    acc = tl.zeros((G_PAD, D_PAD), tl.float32)

    table = table_ptr + seq.to(tl.int64) * stride_tb
    kv_off = kv_head * stride_kh + dims[None, :]
    for start in range(lo, hi, BLOCK_N):
        keys = start + tl.arange(0, BLOCK_N)
        key_ok = keys < hi
        block = tl.load(table + keys // BLOCK_SIZE, mask=key_ok, other=0).to(tl.int64)
        offs = block[:, None] * stride_kb + (keys % BLOCK_SIZE)[:, None] * stride_kt + kv_off
        kv_mask = key_ok[:, None] & dim_ok[None, :]
        k = tl.load(k_ptr + offs, mask=kv_mask, other=0.0)
        v = tl.load(v_ptr + offs, mask=kv_mask, other=0.0)
        m, l, acc = online_softmax_step(q, k, v, (keys >= first)[None, :] & key_ok[None, :], m, l, acc,
                                        qk_scale, F32_DOT)

    if NUM_SPLITS == 1:
        out = acc / l[:, None]
        tl.store(out_ptr + seq.to(tl.int64) * stride_ob + heads[:, None] * stride_oh + dims[None, :],
                 out.to(out_ptr.dtype.element_ty), mask=row_ok[:, None] & dim_ok[None, :])
    else:  # partial results [B, H, S, D] and (max, denominator) [B, H, S, 2] for the combine kernel
        slot = (seq.to(tl.int64) * tl.num_programs(1) * GROUPS + heads) * NUM_SPLITS + split
        tl.store(part_ptr + slot[:, None] * D_PAD + dims[None, :], acc, mask=row_ok[:, None])
        tl.store(stats_ptr + slot * 2, m, mask=row_ok)
        tl.store(stats_ptr + slot * 2 + 1, l, mask=row_ok)


@triton.jit
def _combine_kernel(
    part_ptr, stats_ptr, out_ptr, stride_ob, stride_oh,
    HEAD_DIM: tl.constexpr, D_PAD: tl.constexpr, NUM_SPLITS: tl.constexpr, S_PAD: tl.constexpr,
):
    seq = tl.program_id(0)
    head = tl.program_id(1)
    splits = tl.arange(0, S_PAD)
    split_ok = splits < NUM_SPLITS
    slot = (seq.to(tl.int64) * tl.num_programs(1) + head) * NUM_SPLITS + splits
    m = tl.load(stats_ptr + slot * 2, mask=split_ok, other=NO_MAX)
    l = tl.load(stats_ptr + slot * 2 + 1, mask=split_ok, other=0.0)
    dims = tl.arange(0, D_PAD)
    part = tl.load(part_ptr + slot[:, None] * D_PAD + dims[None, :], mask=split_ok[:, None], other=0.0)
    weight = tl.exp2(m - tl.max(m, 0))  # an empty split has (NO_MAX, 0, 0): weight 0
    out = tl.sum(part * weight[:, None], 0) / tl.sum(l * weight, 0)
    tl.store(out_ptr + seq.to(tl.int64) * stride_ob + head * stride_oh + dims, out.to(out_ptr.dtype.element_ty),
             mask=dims < HEAD_DIM)


def paged_decode(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    seq_lens: torch.Tensor,
    *,
    scale: float,
    sliding_window: int | None = None,
    sinks: torch.Tensor | None = None,
    config: DecodeConfig | None = None,
) -> torch.Tensor:
    """``q [B, H, D]`` (each sequence's newest token) -> ``[B, H, D]`` in q's dtype.

    ``block_tables [B, width]`` (any integer dtype, any row stride) lists each sequence's blocks
    of the pool ``[num_blocks, block_size, KV, D]``; ``seq_lens [B]`` counts its cached tokens,
    the new one included (at least 1). Entries past a sequence's length are never read.
    """
    check_pool(q, k_cache, v_cache, sinks)
    if not can_launch(q):
        raise RuntimeError("paged_decode needs CUDA tensors (or TRITON_INTERPRET=1 on the CPU)")
    batch, heads, dim = q.shape
    _, block_size, kv_heads, _ = k_cache.shape
    if block_tables.shape[0] != batch or seq_lens.shape != (batch,) or block_tables.stride(1) != 1:
        raise ValueError(f"need block_tables [{batch}, width] (unit column stride) and seq_lens [{batch}], got "
                         f"{tuple(block_tables.shape)} and {tuple(seq_lens.shape)}")
    groups = heads // kv_heads
    # A slice (the decodes after a step's prompt chunks) may start 8 bytes into an int64 buffer; Triton
    # would compile a variant for the unaligned pointer mid-serving. A copy of a few hundred bytes is aligned.
    if seq_lens.data_ptr() % 16:
        seq_lens = seq_lens.clone()
    if block_tables.data_ptr() % 16:
        block_tables = block_tables.contiguous().clone()
    cfg = config or decode_config(batch, kv_heads, block_tables.shape[1], block_size, device_sms(q))
    d_pad = pow2_at_least(dim)
    out = torch.empty_like(q, memory_format=torch.contiguous_format)
    splits = cfg.num_splits
    part = stats = out  # unused with one split
    if splits > 1:
        part = torch.empty(batch * heads * splits * d_pad, dtype=torch.float32, device=q.device)
        stats = torch.empty(batch * heads * splits * 2, dtype=torch.float32, device=q.device)
    _decode_kernel[(batch, kv_heads, splits)](
        q, k_cache, v_cache, block_tables, seq_lens, sinks if sinks is not None else q, out, part, stats,
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2), block_tables.stride(0),
        out.stride(0), out.stride(1),
        scale * LOG2E, sliding_window or 0,
        GROUPS=groups, G_PAD=pow2_at_least(groups), HEAD_DIM=dim, D_PAD=d_pad,
        BLOCK_SIZE=block_size, BLOCK_N=cfg.block_n, NUM_SPLITS=splits,
        HAS_WINDOW=sliding_window is not None, HAS_SINKS=sinks is not None,
        F32_DOT=is_interpreter() or k_cache.dtype == torch.float32,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )
    if splits > 1:
        _combine_kernel[(batch, heads)](
            part, stats, out, out.stride(0), out.stride(1),
            HEAD_DIM=dim, D_PAD=d_pad, NUM_SPLITS=splits, S_PAD=pow2_at_least(splits, floor=2), num_warps=2,
        )
    return out
