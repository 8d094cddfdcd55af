"""Pieces both attention kernels share: operand checks and the online-softmax step (Milakov & Gimelshein 2018)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

LOG2E = 1.4426950408889634
#: The running max before any key: finite, so a tile of only masked keys gives exp2(-inf - m) = 0, never NaN.
NO_MAX: tl.constexpr = tl.constexpr(-1.0e30)


def check_pool(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, sinks: torch.Tensor | None) -> None:
    if k_cache.dim() != 4 or k_cache.shape != v_cache.shape or k_cache.stride() != v_cache.stride():
        raise ValueError(f"k/v caches must be alike [num_blocks, block_size, kv_heads, head_dim], got "
                         f"{tuple(k_cache.shape)} and {tuple(v_cache.shape)}")
    if q.dim() != 3 or q.shape[2] != k_cache.shape[3]:
        raise ValueError(f"q must be [tokens, heads, {k_cache.shape[3]}], got {tuple(q.shape)}")
    if q.shape[1] % k_cache.shape[2]:
        raise ValueError(f"{q.shape[1]} query heads are not a multiple of {k_cache.shape[2]} KV heads")
    if q.stride(2) != 1 or k_cache.stride(3) != 1:
        raise ValueError("q and the caches need a contiguous last (head_dim) dimension")
    if sinks is not None and (sinks.shape != (q.shape[1],) or sinks.dtype != torch.float32):
        raise ValueError(f"sinks must be fp32 [{q.shape[1]}], got {sinks.dtype} {tuple(sinks.shape)}")


@triton.jit
def online_softmax_step(q, k, v, mask, m, l, acc, qk_scale, F32_DOT: tl.constexpr):
    """Fold one key tile into the running (max, denominator, weighted sum); scores in log2 units.

    ``q`` [M, D] is already in the dot's input type; ``k``/``v`` [N, D] as loaded; ``mask`` [M, N].
    ``F32_DOT`` keeps every product in fp32 (fp32 caches, and the interpreter, whose bf16 math is wrong).
    """
    if F32_DOT:
        s = tl.dot(q, tl.trans(k.to(tl.float32)), input_precision="ieee")
    else:
        s = tl.dot(q, tl.trans(k))
    s = tl.where(mask, s * qk_scale, float("-inf"))
    m_new = tl.maximum(m, tl.max(s, 1))
    alpha = tl.exp2(m - m_new)
    p = tl.exp2(s - m_new[:, None])
    l = l * alpha + tl.sum(p, 1)
    if F32_DOT:
        acc = acc * alpha[:, None] + tl.dot(p, v.to(tl.float32), input_precision="ieee")
    else:
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
    return m_new, l, acc
