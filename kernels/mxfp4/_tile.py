"""Triton helpers shared by every MXFP4 kernel: decode one weight tile, multiply one tile.

A weight tile is ``wq`` uint8 ``[BN, BK/2]`` (two E2M1 codes a byte, low nibble = even
K index) with ``ws`` uint8 ``[BN, BK/32]`` (E8M0 scales). Two ways to multiply it:

* ``MODE == 0`` ("dot_scaled"): ``tl.dot_scaled`` with the weight as the e2m1 operand. On Hopper
  the compiler upcasts to bf16 in registers with its own bit-twiddling and then uses the
  tensor cores; on Blackwell it would map to the native MX instructions.
* ``MODE == 1`` ("dequant_dot"): decode here (fp16 subnormal trick, see ``e2m1_to_f32``), scale,
  round to bf16 (exact: every MXFP4 value is a bf16 value) and ``tl.dot``.

Under ``TRITON_INTERPRET=1`` numpy cannot do bf16 arithmetic, so ``INTERPRET`` paths
keep operands in fp32; results are the same because the products are exact either way.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def cast_out(x, dtype: tl.constexpr, INTERPRET: tl.constexpr):
    """fp32 -> ``dtype``, rounding to nearest even as the GPU does. The interpreter's own
    fp32 -> bf16 truncates and flushes subnormals, so there the bf16 bits are built here."""
    if INTERPRET and dtype == tl.bfloat16:
        bits = x.to(tl.uint32, bitcast=True)
        bits = bits + 0x7FFF + ((bits >> 16) & 1)
        return (bits >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
    return x.to(dtype)


@triton.jit
def e2m1_to_f32(codes):
    """E2M1 codes (uint8, 0..15) -> fp32.

    The code's three magnitude bits, placed at fp16 bits 11..9, read as an fp16 whose
    exponent field is E2M1's exponent and whose top mantissa bit is E2M1's mantissa;
    E2M1's exponent bias is 1 and fp16's 15, so multiplying by 2**14 gives the value,
    the subnormal code 1 (0.5) included. The sign bit moves from bit 3 to bit 15.
    """
    bits = ((codes & 7).to(tl.uint16) << 9) | ((codes & 8).to(tl.uint16) << 12)
    return bits.to(tl.float16, bitcast=True).to(tl.float32) * 16384.0


@triton.jit
def e8m0_to_f32(scales):
    """E8M0 bytes -> fp32 2**(s-127), built from bits: byte 0 is the subnormal 2**-127, 255 is NaN."""
    bits = scales.to(tl.int32) << 23
    bits = tl.where(scales == 0, 0x400000, bits)
    bits = tl.where(scales == 255, 0x7FC00000, bits)
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def dequant_tile(wq, ws, BN: tl.constexpr, BK: tl.constexpr):
    """``[BN, BK/2]`` codes and ``[BN, BK/32]`` scales -> fp32 ``[BN, BK]`` in natural K order."""
    codes = tl.join(wq & 0xF, wq >> 4).reshape(BN, BK)
    values = e2m1_to_f32(codes).reshape(BN, BK // 32, 32)
    return (values * e8m0_to_f32(ws)[:, :, None]).reshape(BN, BK)


@triton.jit
def mx_dot(acc, wq, ws, xt, BN: tl.constexpr, BK: tl.constexpr, MODE: tl.constexpr, INTERPRET: tl.constexpr):
    """``acc[BN, BM] += dequant(wq, ws)[BN, BK] @ xt[BK, BM]`` with fp32 accumulation."""
    if MODE == 0:
        acc = tl.dot_scaled(wq, ws, "e2m1", xt.to(tl.bfloat16), None, "bf16", acc)
    else:
        w = dequant_tile(wq, ws, BN, BK)
        if INTERPRET:
            acc = tl.dot(w, xt.to(tl.float32), acc)
        else:
            acc = tl.dot(w.to(tl.bfloat16), xt.to(tl.bfloat16), acc)
    return acc


@triton.jit
def mx_k_loop(
    acc, x_rows, m_ok, wq_rows, ws_rows, n_ok, t0, t1, K, KP_HALF, KP_BLOCKS,
    BN: tl.constexpr, BK: tl.constexpr, EVEN_K: tl.constexpr, MODE: tl.constexpr, INTERPRET: tl.constexpr,
):
    """Run K tiles ``[t0, t1)``: ``acc[BN, BM] += W[rows, k] @ X[k, cols]``.

    ``x_rows``: ``[BM]`` pointers to the first element of each activation row;
    ``wq_rows`` / ``ws_rows``: ``[BN, 1]`` pointers to each weight row's codes / scales.
    ``EVEN_K`` (K a multiple of BK, no padding) drops the K masks so loads vectorize.
    """
    for t in range(t0, t1):
        kb = t * (BK // 2) + tl.arange(0, BK // 2)
        ks = t * (BK // 32) + tl.arange(0, BK // 32)
        kx = t * BK + tl.arange(0, BK)
        if EVEN_K:
            wq = tl.load(wq_rows + kb[None, :], mask=n_ok[:, None], other=0)
            ws = tl.load(ws_rows + ks[None, :], mask=n_ok[:, None], other=0)
            xt = tl.load(x_rows[None, :] + kx[:, None], mask=m_ok[None, :], other=0.0)
        else:
            wq = tl.load(wq_rows + kb[None, :], mask=n_ok[:, None] & (kb < KP_HALF)[None, :], other=0)
            ws = tl.load(ws_rows + ks[None, :], mask=n_ok[:, None] & (ks < KP_BLOCKS)[None, :], other=0)
            xt = tl.load(x_rows[None, :] + kx[:, None], mask=m_ok[None, :] & (kx < K)[:, None], other=0.0)
        acc = mx_dot(acc, wq, ws, xt, BN, BK, MODE, INTERPRET)
    return acc


@triton.jit
def mx_k_loop_pair(
    acc_a, acc_b, x_rows, m_ok, qa_rows, sa_rows, qb_rows, sb_rows, n_ok, t0, t1, K, KP_HALF, KP_BLOCKS,
    BN: tl.constexpr, BK: tl.constexpr, MODE: tl.constexpr, INTERPRET: tl.constexpr,
):
    """Like ``mx_k_loop`` for two weights that share the activation tile (gate and up projections)."""
    for t in range(t0, t1):
        kb = t * (BK // 2) + tl.arange(0, BK // 2)
        ks = t * (BK // 32) + tl.arange(0, BK // 32)
        kx = t * BK + tl.arange(0, BK)
        qmask = n_ok[:, None] & (kb < KP_HALF)[None, :]
        smask = n_ok[:, None] & (ks < KP_BLOCKS)[None, :]
        xt = tl.load(x_rows[None, :] + kx[:, None], mask=m_ok[None, :] & (kx < K)[:, None], other=0.0)
        qa = tl.load(qa_rows + kb[None, :], mask=qmask, other=0)
        sa = tl.load(sa_rows + ks[None, :], mask=smask, other=0)
        qb = tl.load(qb_rows + kb[None, :], mask=qmask, other=0)
        sb = tl.load(sb_rows + ks[None, :], mask=smask, other=0)
        acc_a = mx_dot(acc_a, qa, sa, xt, BN, BK, MODE, INTERPRET)
        acc_b = mx_dot(acc_b, qb, sb, xt, BN, BK, MODE, INTERPRET)
    return acc_a, acc_b
