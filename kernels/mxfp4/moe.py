"""gpt-oss MoE expert matmuls in MXFP4: gate_up with the clamped SwiGLU fused, then down.

For each token ``t`` and each of its top-k experts ``e`` with routing weight ``w``:

    g, l = x[t] @ glu[e]^T + bg[e],  x[t] @ linear[e]^T + bl[e]
    a    = min(g, limit) * sigmoid(alpha * min(g, limit)) * (clamp(l, -limit, limit) + 1)
    y[t] += w * (a @ down[e]^T + bd[e])

``a`` is rounded to bf16 between the two matmuls, as in the bf16 model. Two paths:

* decode (few tokens): one program per (pair, tile of I) for gate_up and one per
  (token, tile of H) for down, which loops over the token's k experts and sums in
  registers: two launches, no sorting, no atomics, deterministic.
* prefill: pairs sorted by expert (``group_by_expert``), tiles of ``BM`` rows that share
  one expert's weight tile; down writes each pair's weighted row, and a sum over the k
  slots gives y (deterministic, no atomics).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.mxfp4._env import can_launch, is_interpreter
from kernels.mxfp4._launch import MODES
from kernels.mxfp4._tile import cast_out, mx_k_loop, mx_k_loop_pair
from kernels.mxfp4.moe_layout import ExpertGroups, MoEWeights, group_by_expert
from kernels.mxfp4.reference import mxfp4_moe_torch, route_torch

__all__ = ["MOE_DECODE_MAX_PAIRS", "mxfp4_moe_torch", "mxfp4_moe_triton", "route_torch"]

MOE_DECODE_MAX_PAIRS = 64
SWIGLU_ALPHA = 1.702
SWIGLU_LIMIT = 7.0


@triton.jit
def _tile_rows(order_ptr, tile_expert_ptr, tile_start_ptr, tile_end_ptr, ids_ptr, pid_m, BM: tl.constexpr,
               GROUPED: tl.constexpr):
    """Rows of this program: (sorted row index, pair index, row mask, expert)."""
    if GROUPED:
        expert = tl.load(tile_expert_ptr + pid_m)
        rows = tl.load(tile_start_ptr + pid_m) + tl.arange(0, BM)
        ok = rows < tl.load(tile_end_ptr + pid_m)
        pair = tl.load(order_ptr + rows, mask=ok, other=0)
    else:
        expert = tl.load(ids_ptr + pid_m)
        rows = pid_m + tl.zeros((BM,), tl.int32)
        ok = tl.arange(0, BM) < 1
        pair = rows
    return rows, pair, ok, expert


@triton.jit
def _gate_up_kernel(
    x_ptr, ids_ptr, order_ptr, tile_expert_ptr, tile_start_ptr, tile_end_ptr,
    gq_ptr, gs_ptr, lq_ptr, ls_ptr, gb_ptr, lb_ptr, act_ptr,
    I, H, stride_x, KP_HALF, KP_BLOCKS, TOPK, alpha, limit,
    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, GROUPED: tl.constexpr, HAS_BIAS: tl.constexpr,
    MODE: tl.constexpr, INTERPRET: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_m = tl.program_id(1)
    rows, pair, m_ok, e = _tile_rows(order_ptr, tile_expert_ptr, tile_start_ptr, tile_end_ptr, ids_ptr, pid_m,
                                     BM, GROUPED)
    offs_n = pid_n * BN + tl.arange(0, BN)
    n_ok = offs_n < I
    x_rows = x_ptr + (pair // TOPK).to(tl.int64) * stride_x
    w_row = (e.to(tl.int64) * I + offs_n[:, None])
    t1 = tl.where(tl.max(m_ok.to(tl.int32), axis=0) > 0, tl.cdiv(KP_HALF * 2, BK), 0)
    acc_g = tl.zeros((BN, BM), tl.float32)
    acc_l = tl.zeros((BN, BM), tl.float32)
    acc_g, acc_l = mx_k_loop_pair(acc_g, acc_l, x_rows, m_ok, gq_ptr + w_row * KP_HALF, gs_ptr + w_row * KP_BLOCKS,
                                  lq_ptr + w_row * KP_HALF, ls_ptr + w_row * KP_BLOCKS, n_ok, 0, t1, H, KP_HALF,
                                  KP_BLOCKS, BN, BK, MODE, INTERPRET)
    if HAS_BIAS:
        acc_g += tl.load(gb_ptr + e * I + offs_n, mask=n_ok, other=0.0)[:, None]
        acc_l += tl.load(lb_ptr + e * I + offs_n, mask=n_ok, other=0.0)[:, None]
    g = tl.minimum(acc_g, limit)
    lin = tl.minimum(tl.maximum(acc_l, -limit), limit)
    act = g * tl.sigmoid(alpha * g) * (lin + 1.0)
    tl.store(act_ptr + rows[None, :].to(tl.int64) * I + offs_n[:, None], cast_out(act, act_ptr.dtype.element_ty, INTERPRET),
             mask=n_ok[:, None] & m_ok[None, :])


@triton.jit
def _down_grouped_kernel(
    act_ptr, order_ptr, tile_expert_ptr, tile_start_ptr, tile_end_ptr, wts_ptr,
    dq_ptr, ds_ptr, db_ptr, out_ptr,
    I, H, KP_HALF, KP_BLOCKS,
    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, HAS_BIAS: tl.constexpr,
    MODE: tl.constexpr, INTERPRET: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_m = tl.program_id(1)
    rows, pair, m_ok, e = _tile_rows(order_ptr, tile_expert_ptr, tile_start_ptr, tile_end_ptr, order_ptr, pid_m,
                                     BM, True)
    offs_n = pid_n * BN + tl.arange(0, BN)
    n_ok = offs_n < H
    w_row = e.to(tl.int64) * H + offs_n[:, None]
    t1 = tl.where(tl.max(m_ok.to(tl.int32), axis=0) > 0, tl.cdiv(KP_HALF * 2, BK), 0)
    acc = tl.zeros((BN, BM), tl.float32)
    acc = mx_k_loop(acc, act_ptr + rows.to(tl.int64) * I, m_ok, dq_ptr + w_row * KP_HALF, ds_ptr + w_row * KP_BLOCKS,
                    n_ok, 0, t1, I, KP_HALF, KP_BLOCKS, BN, BK, False, MODE, INTERPRET)
    if HAS_BIAS:
        acc += tl.load(db_ptr + e * H + offs_n, mask=n_ok, other=0.0)[:, None]
    acc *= tl.load(wts_ptr + pair, mask=m_ok, other=0.0).to(tl.float32)[None, :]
    tl.store(out_ptr + pair[None, :].to(tl.int64) * H + offs_n[:, None], acc, mask=n_ok[:, None] & m_ok[None, :])


@triton.jit
def _down_decode_kernel(
    act_ptr, ids_ptr, wts_ptr, dq_ptr, ds_ptr, db_ptr, y_ptr,
    I, H, KP_HALF, KP_BLOCKS, TOPK: tl.constexpr,
    BN: tl.constexpr, BK: tl.constexpr, HAS_BIAS: tl.constexpr, MODE: tl.constexpr, INTERPRET: tl.constexpr,
):
    pid_n = tl.program_id(0)
    t = tl.program_id(1)
    offs_n = pid_n * BN + tl.arange(0, BN)
    n_ok = offs_n < H
    m_ok = tl.arange(0, 16) < 1
    out = tl.zeros((BN, 16), tl.float32)
    for j in tl.static_range(TOPK):
        p = t * TOPK + j
        e = tl.load(ids_ptr + p)
        w_row = e.to(tl.int64) * H + offs_n[:, None]
        a_rows = act_ptr + p.to(tl.int64) * I + tl.zeros((16,), tl.int64)
        acc = tl.zeros((BN, 16), tl.float32)
        acc = mx_k_loop(acc, a_rows, m_ok, dq_ptr + w_row * KP_HALF, ds_ptr + w_row * KP_BLOCKS, n_ok,
                        0, tl.cdiv(KP_HALF * 2, BK), I, KP_HALF, KP_BLOCKS, BN, BK, False, MODE, INTERPRET)
        if HAS_BIAS:
            acc += tl.load(db_ptr + e * H + offs_n, mask=n_ok, other=0.0)[:, None]
        out += tl.load(wts_ptr + p).to(tl.float32) * acc
    y = tl.sum(tl.where(m_ok[None, :], out, 0.0), axis=1)
    tl.store(y_ptr + t.to(tl.int64) * H + offs_n, cast_out(y, y_ptr.dtype.element_ty, INTERPRET), mask=n_ok)


def _check(x: torch.Tensor, ids: torch.Tensor, weights: torch.Tensor, w: MoEWeights) -> None:
    if x.dim() != 2 or x.shape[1] != w.hidden:
        raise ValueError(f"x must be [T, {w.hidden}], got {tuple(x.shape)}")
    if ids.shape != weights.shape or ids.dim() != 2 or ids.shape[0] != x.shape[0]:
        raise ValueError(f"ids and weights must both be [T={x.shape[0]}, k], got {tuple(ids.shape)}, "
                         f"{tuple(weights.shape)}")
    if ids.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"ids must be int32 or int64, got {ids.dtype}")
    if not can_launch(x):
        raise RuntimeError("mxfp4_moe needs CUDA tensors (or TRITON_INTERPRET=1 on the CPU); "
                           "use mxfp4_moe_torch on the CPU")


def mxfp4_moe_triton(
    x: torch.Tensor,
    ids: torch.Tensor,
    weights: torch.Tensor,
    w: MoEWeights,
    *,
    alpha: float = SWIGLU_ALPHA,
    limit: float = SWIGLU_LIMIT,
    path: str = "auto",
    mode: str = "dot_scaled",
) -> torch.Tensor:
    """MoE experts for tokens ``x[T, H]`` routed to ``ids[T, k]`` with ``weights[T, k]``: ``[T, H]`` in x's dtype.

    ``path``: "decode", "grouped" or "auto" (decode up to ``MOE_DECODE_MAX_PAIRS`` pairs).
    """
    _check(x, ids, weights, w)
    t, k = ids.shape
    if path == "auto":
        path = "decode" if t * k <= MOE_DECODE_MAX_PAIRS else "grouped"
    if path not in ("decode", "grouped"):
        raise ValueError(f"path must be 'auto', 'decode' or 'grouped', got {path!r}")
    x = x.contiguous()
    ids32 = ids.to(torch.int32).contiguous()
    wts = weights.float().contiguous()
    i_dim, h_dim = w.intermediate, w.hidden
    pairs = t * k
    act = torch.empty((pairs, i_dim), dtype=torch.bfloat16, device=x.device)
    if t == 0:
        return torch.zeros_like(x)
    interp = is_interpreter()
    m = MODES[mode]
    dummy = act
    bias = lambda b: dummy if b is None else b  # noqa: E731
    bk = 256 if h_dim >= 256 else 128 if h_dim >= 128 else 64
    if path == "decode":
        bn = 32
        _gate_up_kernel[(triton.cdiv(i_dim, bn), pairs)](
            x, ids32, ids32, ids32, ids32, ids32,
            w.glu.blocks, w.glu.scales, w.linear.blocks, w.linear.scales, bias(w.glu_bias), bias(w.linear_bias), act,
            i_dim, h_dim, x.stride(0), w.glu.k_padded // 2, w.glu.k_padded // 32, k, alpha, limit,
            BM=16, BN=bn, BK=bk, GROUPED=False, HAS_BIAS=w.has_bias, MODE=m, INTERPRET=interp,
            num_warps=4, num_stages=4,
        )
        y = torch.empty((t, h_dim), dtype=x.dtype, device=x.device)
        bn_down = 16
        _down_decode_kernel[(triton.cdiv(h_dim, bn_down), t)](
            act, ids32, wts, w.down.blocks, w.down.scales, bias(w.down_bias), y,
            i_dim, h_dim, w.down.k_padded // 2, w.down.k_padded // 32, TOPK=k,
            BN=bn_down, BK=bk, HAS_BIAS=w.has_bias, MODE=m, INTERPRET=interp, num_warps=4, num_stages=4,
        )
        return y
    bm = 64 if pairs >= 64 * w.num_experts else 16 if pairs < 16 * w.num_experts else 32
    groups = group_by_expert(ids32, w.num_experts, bm)
    return _grouped(x, groups, wts, w, act, k, alpha, limit, bk, m, interp)


def _grouped(x: torch.Tensor, groups: ExpertGroups, wts: torch.Tensor, w: MoEWeights, act: torch.Tensor, k: int,
             alpha: float, limit: float, bk: int, mode: int, interp: bool) -> torch.Tensor:
    i_dim, h_dim = w.intermediate, w.hidden
    bm, bn = groups.block, 64
    tiles = (groups.order, groups.tile_expert, groups.tile_start, groups.tile_end)
    bias = lambda b: act if b is None else b  # noqa: E731
    warps = 8 if bm >= 64 else 4
    _gate_up_kernel[(triton.cdiv(i_dim, bn), groups.num_tiles)](
        x, groups.order, *tiles,
        w.glu.blocks, w.glu.scales, w.linear.blocks, w.linear.scales, bias(w.glu_bias), bias(w.linear_bias), act,
        i_dim, h_dim, x.stride(0), w.glu.k_padded // 2, w.glu.k_padded // 32, k, alpha, limit,
        BM=bm, BN=bn, BK=bk, GROUPED=True, HAS_BIAS=w.has_bias, MODE=mode, INTERPRET=interp,
        num_warps=warps, num_stages=3,
    )
    out = torch.empty((act.shape[0], h_dim), dtype=torch.float32, device=x.device)
    bk_down = 256 if i_dim >= 256 else 128 if i_dim >= 128 else 64
    _down_grouped_kernel[(triton.cdiv(h_dim, bn), groups.num_tiles)](
        act, *tiles, wts, w.down.blocks, w.down.scales, bias(w.down_bias), out,
        i_dim, h_dim, w.down.k_padded // 2, w.down.k_padded // 32,
        BM=bm, BN=bn, BK=bk_down, HAS_BIAS=w.has_bias, MODE=mode, INTERPRET=interp, num_warps=warps, num_stages=3,
    )
    return out.view(x.shape[0], k, h_dim).sum(dim=1).to(x.dtype)
