"""Per-step pieces of the grouped MoE kernels (``moe_grouped.py``): a tile's rows, one K step's
activations, scales and decoded weights, and the tile product in either operand orientation."""

from __future__ import annotations

import triton
import triton.language as tl

from quartet.kernels.mxfp4._bf16x2 import fma8_bf16_tile
from quartet.kernels.mxfp4._swiglu import swiglu
from quartet.kernels.mxfp4._tile import cast_out, dequant_tile, k_scales, k_words


@triton.jit
def tile_rows(order_ptr, tile_start_ptr, tile_end_ptr, pid_m, BM: tl.constexpr):
    """Tile ``pid_m``: (has rows, sorted row indices ``[BM]``, their pair indices, row mask)."""
    start = tl.load(tile_start_ptr + pid_m)
    end = tl.load(tile_end_ptr + pid_m)
    rows = start + tl.arange(0, BM)
    ok = rows < end
    return start < end, rows, tl.load(order_ptr + rows, mask=ok, other=0), ok


@triton.jit
def step_scales(s_rows, r8, n_ok, t, KP_BLOCKS, BK: tl.constexpr, SWIZZLED: tl.constexpr):
    """K step ``t``'s E8M0 bytes ``[BN, BK/32]`` (zero past K, so a prefetch past the end is harmless);
    ``s_rows`` / ``r8`` from ``_tile.row_starts``."""
    ks = t * (BK // 32) + tl.arange(0, BK // 32)
    return tl.load(s_rows + k_scales(r8, ks, KP_BLOCKS, SWIZZLED), mask=n_ok[:, None] & (ks < KP_BLOCKS)[None, :],
                   other=0)


@triton.jit
def step_weight(q_rows, r8, ws, n_ok, t, KP_BLOCKS, BN: tl.constexpr, BK: tl.constexpr, EVEN_K: tl.constexpr,
                SWIZZLED: tl.constexpr, BF16X2: tl.constexpr, INTERPRET: tl.constexpr):
    """K step ``t`` of a weight with its scales ``ws``, decoded: bf16 ``[BN, BK]`` (fp32 in the
    interpreter: no bf16 math there). ``EVEN_K``: the step lies inside K, so no K mask and the
    code loads stay vectors."""
    per_word: tl.constexpr = 8 if SWIZZLED else 2
    kq = t * (BK // per_word) + tl.arange(0, BK // per_word)
    offs = k_words(r8, kq, KP_BLOCKS, SWIZZLED)
    if EVEN_K:
        wq = tl.load(q_rows + offs, mask=n_ok[:, None], other=0)
    else:
        wq = tl.load(q_rows + offs, mask=n_ok[:, None] & (kq < KP_BLOCKS * (32 // per_word))[None, :], other=0)
    if BF16X2 and not INTERPRET:
        tl.static_assert(SWIZZLED > 0, "the bf16x2 decode reads fma8 codes")
        w = fma8_bf16_tile(wq, ws, BN, BK)
    else:
        w = dequant_tile(wq, ws, BN, BK, SWIZZLED)
        if not INTERPRET:
            w = w.to(tl.bfloat16)  # exact: every MXFP4 value is a bf16 value
    return w


@triton.jit
def step_acts(x_rows, m_ok, t, K, BK: tl.constexpr, EVEN_K: tl.constexpr, INTERPRET: tl.constexpr):
    """K step ``t`` of the activation rows ``[BM]`` (pointers to each row's start): ``[BM, BK]``."""
    kx = t * BK + tl.arange(0, BK)
    if EVEN_K:
        xt = tl.load(x_rows[:, None] + kx[None, :], mask=m_ok[:, None], other=0.0)
    else:
        xt = tl.load(x_rows[:, None] + kx[None, :], mask=m_ok[:, None] & (kx < K)[None, :], other=0.0)
    # One return statement per helper: the compiler checks every return's type, taken branch or not.
    if INTERPRET:
        xt = xt.to(tl.float32)
    else:
        xt = xt.to(tl.bfloat16)
    return xt


@triton.jit
def tile_mma(acc, w, xt, W_LEFT: tl.constexpr):
    """``acc += w @ xt^T`` (``[BN, BM]``, weight as the left operand) or ``xt @ w^T`` (``[BM, BN]``)."""
    if W_LEFT:
        acc = tl.dot(w, tl.trans(xt), acc)  # [BN, BM]
    else:
        acc = tl.dot(xt, tl.trans(w), acc)  # [BM, BN]
    return acc


@triton.jit
def weight_k_loop(acc, q_rows, s_rows, r8, w_ok, a_rows, m_ok, K, KP_BLOCKS, BN: tl.constexpr, BK: tl.constexpr,
                  TAIL: tl.constexpr, W_LEFT: tl.constexpr, SWIZZLED: tl.constexpr, BF16X2: tl.constexpr,
                  PREFETCH: tl.constexpr, INTERPRET: tl.constexpr):
    """``acc`` plus one weight tile's product with the activation rows ``a_rows`` over all of K: the
    unmasked ``BK`` steps, then (``TAIL``) the masked last one. ``PREFETCH``: step t+1's scale bytes
    load during step t (see ``GroupedConfig.prefetch_scales``)."""
    full = K // BK
    sc = step_scales(s_rows, r8, w_ok, 0, KP_BLOCKS, BK, SWIZZLED)
    for t in range(0, full):
        if PREFETCH:
            sc_t = sc
            sc = step_scales(s_rows, r8, w_ok, t + 1, KP_BLOCKS, BK, SWIZZLED)
        else:
            sc_t = step_scales(s_rows, r8, w_ok, t, KP_BLOCKS, BK, SWIZZLED)
        at = step_acts(a_rows, m_ok, t, K, BK, True, INTERPRET)
        w = step_weight(q_rows, r8, sc_t, w_ok, t, KP_BLOCKS, BN, BK, True, SWIZZLED, BF16X2, INTERPRET)
        acc = tile_mma(acc, w, at, W_LEFT)
    if TAIL:
        at = step_acts(a_rows, m_ok, full, K, BK, False, INTERPRET)
        sc_t = step_scales(s_rows, r8, w_ok, full, KP_BLOCKS, BK, SWIZZLED)
        w = step_weight(q_rows, r8, sc_t, w_ok, full, KP_BLOCKS, BN, BK, False, SWIZZLED, BF16X2, INTERPRET)
        acc = tile_mma(acc, w, at, W_LEFT)
    return acc


@triton.jit
def acc_cols(v, W_LEFT: tl.constexpr):
    """A ``[BN]`` vector shaped to broadcast along the accumulator's weight-row axis."""
    if W_LEFT:
        r = v[:, None]
    else:
        r = v[None, :]
    return r


@triton.jit
def swiglu_rows_store(acc_g, acc_l, gb_ptr, lb_ptr, act_ptr, e, I, offs_n, n_ok, rows, m_ok, alpha, limit,
                      W_LEFT: tl.constexpr, HAS_BIAS: tl.constexpr, INTERPRET: tl.constexpr):
    """A gate_up tile's epilogue: expert ``e``'s biases, the clamped SwiGLU, and the activations stored
    at the tile's sorted ``rows`` (columns ``offs_n``), in either accumulator orientation."""
    if HAS_BIAS:
        acc_g += acc_cols(tl.load(gb_ptr + e * I + offs_n, mask=n_ok, other=0.0), W_LEFT)
        acc_l += acc_cols(tl.load(lb_ptr + e * I + offs_n, mask=n_ok, other=0.0), W_LEFT)
    act = cast_out(swiglu(acc_g, acc_l, alpha, limit), act_ptr.dtype.element_ty, INTERPRET)
    if W_LEFT:
        tl.store(act_ptr + rows[None, :].to(tl.int64) * I + offs_n[:, None], act,
                 mask=n_ok[:, None] & m_ok[None, :])
    else:
        tl.store(act_ptr + rows[:, None].to(tl.int64) * I + offs_n[None, :], act,
                 mask=m_ok[:, None] & n_ok[None, :])
