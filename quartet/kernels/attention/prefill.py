"""Paged prefill attention (varlen, chunked): new tokens after cached context, FlashAttention-2 tiles.

Each sequence brings ``query_len`` new tokens that sit at the end of its ``seq_len`` cached ones,
their K/V already written to the pool; so a whole prompt, a later chunk of one, and a prompt
after a prefix-cache hit are the same case. A program takes one tile of query rows, a few
consecutive tokens times the query heads of one KV head (so K/V tiles are loaded once for the
group, GQA), and walks key tiles read through the block table, from the window's first key
(or 0) to its last token, with an online softmax (Dao 2023, FlashAttention-2). Tiles wholly
outside the causal/window range are never visited. The tile list is built on the host from
the step's Python lengths (prefill is not graph-captured) and can be shared by every layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from quartet.kernels.attention._common import LOG2E, NO_MAX, check_pool, online_softmax_step
from quartet.kernels.attention._launch import PrefillConfig, can_launch, is_interpreter, pow2_at_least, prefill_config

__all__ = ["PrefillPlan", "paged_prefill"]


@dataclass(frozen=True, slots=True)
class PrefillPlan:
    """Where each query tile starts, ``tiles [n, 2]`` (sequence, first new token), and per sequence
    ``seqs [B, 3]`` (first row in q, new tokens, cached tokens), int32 on the kernel's device."""

    tiles: torch.Tensor
    seqs: torch.Tensor
    tokens_per_tile: int

    @classmethod
    def build(
        cls,
        query_starts: Sequence[int],
        query_lens: Sequence[int],
        seq_lens: Sequence[int],
        *,
        tokens_per_tile: int,
        device: torch.device | str,
    ) -> PrefillPlan:
        tiles = [(i, t) for i, n in enumerate(query_lens) for t in range(0, n, tokens_per_tile)]
        seqs = list(zip(query_starts, query_lens, seq_lens))
        for start, n, length in seqs:
            if not 0 < n <= length:
                raise ValueError(f"a sequence of {length} cached tokens cannot bring {n} new ones")
        return cls(
            tiles=torch.tensor(tiles, dtype=torch.int32).to(device, non_blocking=True),
            seqs=torch.tensor(seqs, dtype=torch.int32).to(device, non_blocking=True),
            tokens_per_tile=tokens_per_tile,
        )


# The block table's row stride changes from step to step (an eager step's table is as wide as its longest
# sequence, a graph's as its buffer): specializing on it (Triton's divisibility-by-16 variants) compiled new
# variants mid-serving, a 0.4-1.2 s stall each on an H100.
@triton.jit(do_not_specialize=["stride_tb"])
def _prefill_kernel(
    q_ptr, k_ptr, v_ptr, table_ptr, tiles_ptr, seqs_ptr, sinks_ptr, out_ptr,
    stride_qt, stride_qh, stride_kb, stride_kt, stride_kh, stride_tb, stride_ot, stride_oh,
    qk_scale, window,
    GROUPS: tl.constexpr, HEAD_DIM: tl.constexpr, D_PAD: tl.constexpr, BLOCK_SIZE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, TOKENS: tl.constexpr,
    HAS_WINDOW: tl.constexpr, HAS_SINKS: tl.constexpr, F32_DOT: tl.constexpr,
):
    tile = tl.program_id(0)
    kv_head = tl.program_id(1)
    seq = tl.load(tiles_ptr + tile * 2)
    first_token = tl.load(tiles_ptr + tile * 2 + 1)
    q_start = tl.load(seqs_ptr + seq * 3)
    q_len = tl.load(seqs_ptr + seq * 3 + 1)
    length = tl.load(seqs_ptr + seq * 3 + 2)
    context = length - q_len

    rows = tl.arange(0, BLOCK_M)
    token = first_token + rows // GROUPS
    heads = kv_head * GROUPS + rows % GROUPS
    row_ok = (rows < TOKENS * GROUPS) & (token < q_len)
    pos = context + token
    dims = tl.arange(0, D_PAD)
    dim_ok = dims < HEAD_DIM
    q_rows = (q_start + token).to(tl.int64)
    q = tl.load(q_ptr + q_rows[:, None] * stride_qt + heads[:, None] * stride_qh + dims[None, :],
                mask=row_ok[:, None] & dim_ok[None, :], other=0.0)
    if F32_DOT:
        q = q.to(tl.float32)
    else:
        q = q.to(k_ptr.dtype.element_ty)

    m = tl.full((BLOCK_M,), NO_MAX, tl.float32)
    l = tl.zeros((BLOCK_M,), tl.float32)
    if HAS_SINKS:  # one more logit with no value: the running sums start from it
        m = tl.load(sinks_ptr + heads) * 1.4426950408889634
        l = tl.full((BLOCK_M,), 1.0, tl.float32)
    acc = tl.zeros((BLOCK_M, D_PAD), tl.float32)

    last = tl.minimum(context + first_token + TOKENS, length)  # one past the tile's last position
    lo = 0
    if HAS_WINDOW:
        lo = tl.maximum(context + first_token - window + 1, 0)
    table = table_ptr + seq.to(tl.int64) * stride_tb
    kv_off = kv_head * stride_kh + dims[None, :]
    for start in range(lo, last, BLOCK_N):
        keys = start + tl.arange(0, BLOCK_N)
        key_ok = keys < last
        block = tl.load(table + keys // BLOCK_SIZE, mask=key_ok, other=0).to(tl.int64)
        offs = block[:, None] * stride_kb + (keys % BLOCK_SIZE)[:, None] * stride_kt + kv_off
        kv_mask = key_ok[:, None] & dim_ok[None, :]
        k = tl.load(k_ptr + offs, mask=kv_mask, other=0.0)
        v = tl.load(v_ptr + offs, mask=kv_mask, other=0.0)
        mask = keys[None, :] <= pos[:, None]
        if HAS_WINDOW:
            mask &= keys[None, :] > pos[:, None] - window
        m, l, acc = online_softmax_step(q, k, v, mask, m, l, acc, qk_scale, F32_DOT)

    out = acc / l[:, None]
    tl.store(out_ptr + q_rows[:, None] * stride_ot + heads[:, None] * stride_oh + dims[None, :],
             out.to(out_ptr.dtype.element_ty), mask=row_ok[:, None] & dim_ok[None, :])


def paged_prefill(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    *,
    query_starts: Sequence[int],
    query_lens: Sequence[int],
    seq_lens: Sequence[int],
    scale: float,
    sliding_window: int | None = None,
    sinks: torch.Tensor | None = None,
    plan: PrefillPlan | None = None,
    config: PrefillConfig | None = None,
) -> torch.Tensor:
    """``q [T, H, D]`` -> ``[T, H, D]``: sequence ``i``'s ``query_lens[i]`` new tokens (rows from
    ``query_starts[i]``) attend causally to its ``seq_lens[i]`` tokens in the pool (block table row
    ``i``). Rows no sequence owns are left uninitialized. Pass the same ``plan`` (``plan_for``)
    to every layer of a step to build the tile list once.
    """
    check_pool(q, k_cache, v_cache, sinks)
    if not can_launch(q):
        raise RuntimeError("paged_prefill needs CUDA tensors (or TRITON_INTERPRET=1 on the CPU)")
    heads, dim = q.shape[1], q.shape[2]
    block_size, kv_heads = k_cache.shape[1], k_cache.shape[2]
    groups = heads // kv_heads
    cfg = config or prefill_config(groups)
    tokens = cfg.block_m // groups
    if tokens < 1:
        raise ValueError(f"block_m={cfg.block_m} holds fewer rows than the {groups} query heads of a KV head")
    if block_tables.shape[0] < len(query_lens) or block_tables.stride(1) != 1:
        raise ValueError(f"block_tables needs a row per sequence ({len(query_lens)}) and unit column stride")
    if plan is None or plan.tokens_per_tile != tokens:
        plan = PrefillPlan.build(query_starts, query_lens, seq_lens, tokens_per_tile=tokens, device=q.device)
    out = torch.empty_like(q, memory_format=torch.contiguous_format)
    if plan.tiles.shape[0] == 0:
        return out
    _prefill_kernel[(plan.tiles.shape[0], kv_heads)](
        q, k_cache, v_cache, block_tables, plan.tiles, plan.seqs, sinks if sinks is not None else q, out,
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2), block_tables.stride(0),
        out.stride(0), out.stride(1),
        scale * LOG2E, sliding_window or 0,
        GROUPS=groups, HEAD_DIM=dim, D_PAD=pow2_at_least(dim), BLOCK_SIZE=block_size,
        BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, TOKENS=tokens,
        HAS_WINDOW=sliding_window is not None, HAS_SINKS=sinks is not None,
        F32_DOT=is_interpreter() or k_cache.dtype == torch.float32,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )
    return out


def plan_for(
    query_starts: Sequence[int], query_lens: Sequence[int], seq_lens: Sequence[int], *, groups: int,
    device: torch.device | str, config: PrefillConfig | None = None,
) -> PrefillPlan:
    """The tile list ``paged_prefill`` would build, to share across layers of one step."""
    cfg = config or prefill_config(groups)
    return PrefillPlan.build(query_starts, query_lens, seq_lens, tokens_per_tile=cfg.block_m // groups, device=device)
