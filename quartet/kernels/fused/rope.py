"""Split a fused q/k/v projection and rotate q and k (RoPE, "rotate half" pairs ``(i, i + D/2)``).

``qkv`` is ``[T, (H + 2 * KV) * D]``: H query heads, then KV key heads, then KV value
heads. The angle of pair ``i`` at position ``p`` is ``p * inv_freq[i]``; cos and sin
are multiplied by ``scale`` (YaRN's attention factor; 1 for plain RoPE). The kernel
works in fp32 and rounds each output once. With a KV cache given (``[blocks,
block_size, KV, D]`` tensors and a slot per token), k and v are also written there,
so attention need not copy them again.
"""

from __future__ import annotations

import torch

from quartet.kernels.fused._launch import use_triton


def _check(qkv: torch.Tensor, positions: torch.Tensor, inv_freq: torch.Tensor, heads: int, kv_heads: int) -> int:
    half = inv_freq.numel()
    dim = 2 * half
    if qkv.dim() != 2 or qkv.shape[1] != (heads + 2 * kv_heads) * dim:
        raise ValueError(f"qkv must be [T, {(heads + 2 * kv_heads) * dim}], got {tuple(qkv.shape)}")
    if positions.shape != (qkv.shape[0],):
        raise ValueError(f"positions must be [{qkv.shape[0]}], got {tuple(positions.shape)}")
    return dim


def rope_qkv_torch(
    qkv: torch.Tensor, positions: torch.Tensor, inv_freq: torch.Tensor, scale: float, heads: int, kv_heads: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reference, in fp32 with one rounding: ``(q [T, H, D], k [T, KV, D], v [T, KV, D])``."""
    dim = _check(qkv, positions, inv_freq, heads, kv_heads)
    t = qkv.shape[0]
    angles = positions.float().unsqueeze(-1) * inv_freq.float()
    cos, sin = (angles.cos() * scale).unsqueeze(1), (angles.sin() * scale).unsqueeze(1)

    def rotate(x: torch.Tensor) -> torch.Tensor:
        first, second = x.float().chunk(2, dim=-1)
        return torch.cat((first * cos - second * sin, second * cos + first * sin), dim=-1).to(qkv.dtype)

    q = qkv[:, : heads * dim].view(t, heads, dim)
    k = qkv[:, heads * dim : (heads + kv_heads) * dim].view(t, kv_heads, dim)
    v = qkv[:, (heads + kv_heads) * dim :].reshape(t, kv_heads, dim)
    return rotate(q), rotate(k), v.contiguous()


def rope_qkv(
    qkv: torch.Tensor,
    positions: torch.Tensor,
    inv_freq: torch.Tensor,
    scale: float,
    heads: int,
    kv_heads: int,
    *,
    k_cache: torch.Tensor | None = None,
    v_cache: torch.Tensor | None = None,
    slots: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rotated ``q``, ``k`` and ``v`` as contiguous ``[T, heads, D]`` tensors.

    With ``k_cache``/``v_cache`` (``[blocks, block_size, KV, D]``) and ``slots`` (``[T]``, flat
    ``block * block_size + offset``), k and v are also written to the cache, on every device.
    """
    _check(qkv, positions, inv_freq, heads, kv_heads)
    if not use_triton(qkv) or qkv.shape[0] == 0:
        q, k, v = rope_qkv_torch(qkv, positions, inv_freq, scale, heads, kv_heads)
        if k_cache is not None and v_cache is not None and slots is not None:
            k_cache.view(-1, kv_heads, k.shape[-1]).index_copy_(0, slots, k)
            v_cache.view(-1, kv_heads, v.shape[-1]).index_copy_(0, slots, v)
        return q, k, v
    from quartet.kernels.fused._rope_kernel import launch_rope_qkv

    return launch_rope_qkv(qkv, positions, inv_freq, scale, heads, kv_heads, k_cache, v_cache, slots)
