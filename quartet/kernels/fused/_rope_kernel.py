"""The Triton kernel of ``rope.rope_qkv``: one program per token, every head of it at once."""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _rope_qkv_kernel(
    qkv_ptr, pos_ptr, inv_ptr, q_ptr, k_ptr, v_ptr, kc_ptr, vc_ptr, slot_ptr, stride_t, scale,
    H: tl.constexpr, KV: tl.constexpr, HALF: tl.constexpr, BH: tl.constexpr, BKV: tl.constexpr,
    CACHE: tl.constexpr,
):
    t = tl.program_id(0).to(tl.int64)
    dim: tl.constexpr = 2 * HALF
    j = tl.arange(0, HALF)
    angle = tl.load(pos_ptr + t).to(tl.float32) * tl.load(inv_ptr + j)
    cos = (tl.cos(angle) * scale)[None, :]
    sin = (tl.sin(angle) * scale)[None, :]
    src = qkv_ptr + t * stride_t
    # Query and key heads together: rows [0, H) are q, [H, H + KV) are k.
    h = tl.arange(0, BH)
    ok = (h < H + KV)[:, None]
    first = tl.load(src + h[:, None] * dim + j[None, :], mask=ok, other=0.0).to(tl.float32)
    second = tl.load(src + h[:, None] * dim + HALF + j[None, :], mask=ok, other=0.0).to(tl.float32)
    out1 = (first * cos - second * sin).to(q_ptr.dtype.element_ty)
    out2 = (second * cos + first * sin).to(q_ptr.dtype.element_ty)
    is_q = (h < H)[:, None]
    q_dst = q_ptr + t * (H * dim) + h[:, None] * dim + j[None, :]
    tl.store(q_dst, out1, mask=is_q)
    tl.store(q_dst + HALF, out2, mask=is_q)
    is_k = ok & (h >= H)[:, None]
    kh = tl.where(h >= H, h - H, 0)[:, None]
    tl.store(k_ptr + t * (KV * dim) + kh * dim + j[None, :], out1, mask=is_k)
    tl.store(k_ptr + t * (KV * dim) + kh * dim + HALF + j[None, :], out2, mask=is_k)
    g = tl.arange(0, BKV)
    g_ok = (g < KV)[:, None]
    d = tl.arange(0, dim)[None, :]
    v = tl.load(src + (H + KV) * dim + g[:, None] * dim + d, mask=g_ok, other=0.0)
    tl.store(v_ptr + t * (KV * dim) + g[:, None] * dim + d, v, mask=g_ok)
    if CACHE:
        slot = tl.load(slot_ptr + t).to(tl.int64)
        row = slot * (KV * dim)
        tl.store(kc_ptr + row + kh * dim + j[None, :], out1, mask=is_k)
        tl.store(kc_ptr + row + kh * dim + HALF + j[None, :], out2, mask=is_k)
        tl.store(vc_ptr + row + g[:, None] * dim + d, v, mask=g_ok)


def launch_rope_qkv(
    qkv: torch.Tensor,
    positions: torch.Tensor,
    inv_freq: torch.Tensor,
    scale: float,
    heads: int,
    kv_heads: int,
    k_cache: torch.Tensor | None,
    v_cache: torch.Tensor | None,
    slots: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    t = qkv.shape[0]
    half = inv_freq.numel()
    if half & (half - 1):
        raise ValueError(f"head_dim / 2 must be a power of two for the fused RoPE kernel, got {half}")
    if qkv.stride(-1) != 1:
        qkv = qkv.contiguous()
    cache = k_cache is not None
    if cache and (v_cache is None or slots is None or slots.shape != (t,)):
        raise ValueError("writing the KV cache needs k_cache, v_cache and one slot per token")
    q = torch.empty((t, heads, 2 * half), dtype=qkv.dtype, device=qkv.device)
    k = torch.empty((t, kv_heads, 2 * half), dtype=qkv.dtype, device=qkv.device)
    v = torch.empty((t, kv_heads, 2 * half), dtype=qkv.dtype, device=qkv.device)
    _rope_qkv_kernel[(t,)](
        qkv, positions, inv_freq, q, k, v,
        k_cache if cache else k, v_cache if cache else v, slots if cache else positions,
        qkv.stride(0), float(scale),
        H=heads, KV=kv_heads, HALF=half, BH=triton.next_power_of_2(heads + kv_heads),
        BKV=triton.next_power_of_2(kv_heads), CACHE=cache, num_warps=4,
    )
    return q, k, v
