"""The grouped MoE's gate_up kernel on paired tiles (``GroupedConfig.pair_rows``, launched by
``moe_grouped.py``): gate and up rows in one ``[2 BN, BK]`` weight tile, so each K step has one
decode, one barrier and one MMA twice as wide instead of two of each."""

from __future__ import annotations

import triton
import triton.language as tl

from quartet.kernels.mxfp4._grouped_tile import swiglu_rows_store, tile_rows, weight_k_loop
from quartet.kernels.mxfp4._tile import row_starts


@triton.jit
def gate_up_paired_kernel(
    x_ptr, order_ptr, tile_expert_ptr, tile_start_ptr, tile_end_ptr,
    gq_ptr, gs_ptr, lq_ptr, ls_ptr, gb_ptr, lb_ptr, act_ptr,
    I, H, stride_x, KP_BLOCKS, TOPK, alpha, limit,
    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, TAIL: tl.constexpr, W_LEFT: tl.constexpr,
    HAS_BIAS: tl.constexpr, SWIZZLED: tl.constexpr, BF16X2: tl.constexpr, PREFETCH: tl.constexpr,
    INTERPRET: tl.constexpr,
):
    """``_gate_up_kernel`` on one ``[2 BN, BK]`` tile a step. Weight on the right: row ``2j`` is
    gate row ``j``, row ``2j + 1`` up row ``j``, so the accumulator's neighbouring columns (held
    by one thread in the MMA layout) split into gate and up without a shuffle. Weight on the
    left (``W_LEFT``, the decoded tile feeds the MMA from registers, no shared-memory trip or
    barrier for it): rows ``[0, BN)`` are gate, ``[BN, 2 BN)`` up, split once after the loop."""
    pid_n = tl.program_id(0)
    pid_m = tl.program_id(1)
    busy, rows, pair, m_ok = tile_rows(order_ptr, tile_start_ptr, tile_end_ptr, pid_m, BM)
    if busy:
        e = tl.load(tile_expert_ptr + pid_m).to(tl.int64)
        j = tl.arange(0, 2 * BN)
        if W_LEFT:
            r = j % BN
            gate = (j < BN)[:, None]
        else:
            r = j // 2
            gate = (j % 2 == 0)[:, None]
        w_ok = pid_n * BN + r < I
        gq, gs, r8 = row_starts(gq_ptr, gs_ptr, e * I + pid_n * BN + r, KP_BLOCKS, SWIZZLED)
        lq, ls, r8 = row_starts(lq_ptr, ls_ptr, e * I + pid_n * BN + r, KP_BLOCKS, SWIZZLED)
        q = tl.where(gate, gq, lq)
        s = tl.where(gate, gs, ls)
        x_rows = x_ptr + (pair // TOPK).to(tl.int64) * stride_x
        if W_LEFT:
            acc = tl.zeros((2 * BN, BM), tl.float32)
        else:
            acc = tl.zeros((BM, 2 * BN), tl.float32)
        acc = weight_k_loop(acc, q, s, r8, w_ok, x_rows, m_ok, H, KP_BLOCKS, 2 * BN, BK, TAIL, W_LEFT, SWIZZLED, BF16X2,
                            PREFETCH, INTERPRET)
        if W_LEFT:
            acc_g, acc_l = tl.split(tl.permute(acc.reshape(2, BN, BM), (1, 2, 0)))
        else:
            acc_g, acc_l = tl.split(acc.reshape(BM, BN, 2))
        offs_n = pid_n * BN + tl.arange(0, BN)
        n_ok = offs_n < I
        swiglu_rows_store(acc_g, acc_l, gb_ptr, lb_ptr, act_ptr, e, I, offs_n, n_ok, rows, m_ok, alpha, limit,
                          W_LEFT, HAS_BIAS, INTERPRET)
