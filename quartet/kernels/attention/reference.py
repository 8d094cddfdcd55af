"""The torch reference for paged attention: gather each sequence's keys, masked fp32 softmax with sinks.

Slow and obvious on purpose (one sequence at a time, scores materialized); the kernels are
tested against it and the engine keeps its own faster torch path for the CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def paged_attention_torch(
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
) -> torch.Tensor:
    """``q [T, H, D]`` (sequence ``i``'s new tokens at rows ``query_starts[i] ...``) -> ``[T, H, D]``.

    Sequence ``i`` has ``seq_lens[i]`` tokens in the pool ``[num_blocks, block_size, KV, D]``
    (its blocks listed in ``block_tables[i]``); its ``query_lens[i]`` new tokens are the last
    ones. Query head ``h`` reads KV head ``h // (H // KV)``. Rows of ``q`` no sequence owns
    come back as zeros.
    """
    heads, kv_heads = q.shape[1], k_cache.shape[2]
    groups = heads // kv_heads
    block_size = k_cache.shape[1]
    out = torch.zeros_like(q)
    for i, (start, n, length) in enumerate(zip(query_starts, query_lens, seq_lens)):
        blocks = block_tables[i, : -(-length // block_size)].long()
        k = k_cache[blocks].flatten(0, 1)[:length].float().repeat_interleave(groups, dim=1)  # [L, H, D]
        v = v_cache[blocks].flatten(0, 1)[:length].float().repeat_interleave(groups, dim=1)
        qi = q[start : start + n].float()
        scores = torch.einsum("nhd,lhd->hnl", qi, k) * scale
        query_pos = torch.arange(length - n, length, device=q.device).view(-1, 1)
        key_pos = torch.arange(length, device=q.device).view(1, -1)
        mask = key_pos <= query_pos
        if sliding_window is not None:
            mask &= key_pos > query_pos - sliding_window
        scores = scores.masked_fill(~mask, float("-inf"))
        if sinks is not None:
            scores = torch.cat([scores, sinks.float().view(heads, 1, 1).expand(heads, n, 1)], dim=-1)
        probs = torch.softmax(scores, dim=-1)[..., :length]
        out[start : start + n] = torch.einsum("hnl,lhd->nhd", probs, v).to(q.dtype)
    return out
